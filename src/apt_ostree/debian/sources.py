"""APT sources as deb822 stanzas: read the host's, convert treefile entries, write a .sources file.

A stanza is the text of one deb822 paragraph without a trailing newline, e.g.

    Types: deb
    URIs: http://127.0.0.1:8080/debian
    Suites: bookworm
    Components: main

Everything here only reads the host's configuration; a compose or a layering
transaction writes its own `.sources` file with `write_sources_file`.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from apt_ostree.errors import SourceError

# A parsed paragraph: (field name as written, value). Multi-line values keep
# their lines joined by "\n"; the deb822 " ." placeholder is read as "".
Paragraph = list[tuple[str, str]]

# deb822 field names as sources.list(5) spells them, by lower-case name.
_FIELDS = {
    name.lower(): name
    for name in (
        "Types",
        "URIs",
        "Suites",
        "Components",
        "Enabled",
        "Architectures",
        "Architectures-Add",
        "Architectures-Remove",
        "Languages",
        "Languages-Add",
        "Languages-Remove",
        "Targets",
        "Targets-Add",
        "Targets-Remove",
        "PDiffs",
        "By-Hash",
        "Allow-Insecure",
        "Allow-Weak",
        "Allow-Downgrade-To-Insecure",
        "Trusted",
        "Signed-By",
        "Check-Valid-Until",
        "Valid-Until-Min",
        "Valid-Until-Max",
        "Check-Date",
        "Date-Max-Future",
        "InRelease-Path",
        "Snapshot",
    )
}
# The one-line format's option names that differ from the deb822 field names.
_ONE_LINE_ALIASES = {"arch": "Architectures", "lang": "Languages", "target": "Targets"}
# Fields whose values are lists: commas in the one-line format, spaces in deb822.
_LIST_FIELDS = {
    "Architectures",
    "Architectures-Add",
    "Architectures-Remove",
    "Languages",
    "Languages-Add",
    "Languages-Remove",
    "Targets",
    "Targets-Add",
    "Targets-Remove",
    "Signed-By",
}
_ONE_LINE_KEYS = {*_FIELDS, *_ONE_LINE_ALIASES}
_FIRST_FIELDS = ("Types", "URIs", "Suites", "Components")
# apt's StringToBool spellings of "false".
_FALSE_WORDS = {"no", "false", "off", "without", "disable", "0"}

_KEY_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
_KEY_END = "-----END PGP PUBLIC KEY BLOCK-----"
_FINGERPRINT = re.compile(r"^[0-9A-Fa-f]{8,40}!?$")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_FIELD_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*\s*:")
_ONE_LINE = re.compile(r"^(?P<type>deb(?:-src)?)\s+(?:\[(?P<options>[^\]]*)\]\s*)?(?P<rest>.*)$")


# --- the host's sources ---------------------------------------------------------------


def host_sources(root: Path = Path("/")) -> list[str]:
    """The binary (deb) sources configured in `root`/etc/apt, as deb822 stanzas.

    Reads sources.list and sources.list.d/*.list and *.sources in apt's order;
    deb-src entries and `Enabled: no` stanzas are left out. Files are only read.
    """
    apt_dir = root / "etc/apt"
    files: list[Path] = []
    if (apt_dir / "sources.list").is_file():
        files.append(apt_dir / "sources.list")
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        # apt reads both formats from sources.list.d in one alphabetical order.
        files += sorted(
            p for p in parts.iterdir() if p.suffix in (".list", ".sources") and p.is_file()
        )
    stanzas: list[str] = []
    for path in files:
        text = _read_text(path)
        if path.suffix == ".sources":
            stanzas += _host_deb822_stanzas(text, path)
        else:
            stanzas += _host_one_line_stanzas(text, path)
    if not stanzas:
        raise SourceError(
            f"no APT sources configured in {apt_dir}/sources.list or {parts}/ "
            "(only enabled deb entries count); add one, or name sources in the treefile"
        )
    return stanzas


def sources_for_suite(stanzas: Sequence[str], suite: str) -> list[str]:
    """The host's `stanzas` made to serve release `suite` from the same archives.

    Each suite is a release name with an optional pocket (`bookworm`,
    `bookworm-updates`, `bookworm-security`); its release name becomes `suite`
    and the pocket stays (`trixie`, `trixie-updates`, `trixie-security`). Flat
    repositories (a suite ending in `/`) are kept as they are; a suite that the
    change makes twice is kept once.
    """
    out: list[str] = []
    for stanza in stanzas:
        for paragraph in parse_deb822(stanza):
            suites = (_get(paragraph, "Suites") or "").split()
            if not suites or any(s.endswith("/") for s in suites):
                out.append(render_stanza(paragraph))
                continue
            moved: list[str] = []
            for old in suites:
                _, dash, pocket = old.partition("-")
                new = suite + dash + pocket
                if new not in moved:
                    moved.append(new)
            rendered = render_stanza(_set(paragraph, "Suites", " ".join(moved)))
            if rendered not in out:
                out.append(rendered)
    return out


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"cannot read {path}: {e}") from e


def _host_one_line_stanzas(text: str, path: Path) -> list[str]:
    stanzas = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        # In the one-line format "#" starts a comment anywhere on the line.
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            kind, fields = _parse_one_line(line)
            if kind != "deb":
                continue
            if not _get(fields, "Suites"):
                raise SourceError(f'"{line}" names no suite')
        except SourceError as e:
            raise SourceError(f"{path}:{lineno}: {e}") from None
        stanzas.append(render_stanza(_ordered(fields)))
    return stanzas


def _host_deb822_stanzas(text: str, path: Path) -> list[str]:
    try:
        paragraphs = parse_deb822(text)
    except SourceError as e:
        raise SourceError(f"{path}:{e}") from None
    stanzas = []
    for paragraph in paragraphs:
        if _is_disabled(paragraph):
            continue
        types = (_get(paragraph, "Types") or "").split()
        if "deb" not in types:
            continue
        stanzas.append(render_stanza(_set(paragraph, "Types", "deb")))
    return stanzas


def _is_disabled(paragraph: Paragraph) -> bool:
    enabled = _get(paragraph, "Enabled")
    return enabled is not None and enabled.strip().lower() in _FALSE_WORDS


# --- treefile entries ---------------------------------------------------------------


def parse_source_entry(
    entry: str | Mapping[str, Any],
    base_dir: Path,
    *,
    suite: str | None = None,
    components: Sequence[str] = ("main",),
) -> str:
    """One treefile `sources` entry as a deb822 stanza.

    `entry` is a one-line `deb [options] URI [SUITE [COMPONENT...]]` string, a
    deb822 stanza string, or a mapping of deb822 field names (any case) to
    strings, lists or booleans. Relative key files in Signed-By are resolved
    against `base_dir` and must exist. An entry without Suites gets `suite`,
    one without Components gets `components`.
    """
    if isinstance(entry, str):
        fields = _entry_from_string(entry)
    elif isinstance(entry, Mapping):
        fields = _entry_from_mapping(entry)
    else:
        raise SourceError(f"a source must be a string or a mapping, not {type(entry).__name__}")
    return render_stanza(_complete_entry(fields, base_dir, suite, components))


def _entry_from_string(entry: str) -> Paragraph:
    lines = [
        line for line in entry.strip().splitlines() if line.strip() and not line.startswith("#")
    ]
    if not lines:
        raise SourceError("the source is empty")
    if _FIELD_LINE.match(lines[0]):
        paragraphs = parse_deb822(entry)
        if len(paragraphs) != 1:
            raise SourceError(
                "a deb822 source must be a single stanza (write each stanza as its own "
                'entry, and the empty lines of an embedded key as " .")'
            )
        return [(_canonical_field(name), value) for name, value in paragraphs[0]]
    if len(lines) > 1:
        raise SourceError("a one-line source must be one line; write each source as its own entry")
    kind, fields = _parse_one_line(lines[0].strip())
    if kind != "deb":
        raise SourceError(f'only "deb" sources are used to compose, not "{kind}"')
    return fields


def _entry_from_mapping(entry: Mapping[str, Any]) -> Paragraph:
    fields: Paragraph = []
    for key, value in entry.items():
        if not isinstance(key, str):
            raise SourceError(f"field names must be strings, not {key!r}")
        name = _canonical_field(key)
        fields.append((name, _mapping_value(name, value)))
    return fields


def _mapping_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        # Only an embedded key keeps its lines; other values are word lists.
        return value.strip() if name == "Signed-By" else " ".join(value.split())
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
    ):
        if name == "Signed-By" and any(_KEY_BEGIN in str(v) for v in value):
            raise SourceError("an embedded key must be the Signed-By value itself, not a list item")
        return " ".join(str(v) for v in value)
    raise SourceError(f'field "{name}": expected a string or a list of strings')


def _canonical_field(name: str) -> str:
    key = name.strip().lower()
    if key in _FIELDS:
        return _FIELDS[key]
    if key in _ONE_LINE_ALIASES:
        return _ONE_LINE_ALIASES[key]
    # X- fields are private extensions (e.g. X-Repolib-Name); apt ignores them.
    if key.startswith("x-"):
        return name.strip()
    raise SourceError(f'unknown field "{name}" (see sources.list(5) for the deb822 fields)')


def _complete_entry(
    fields: Paragraph, base_dir: Path, suite: str | None, components: Sequence[str]
) -> Paragraph:
    names = [name for name, _ in fields]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise SourceError(f'field "{duplicate}" is given twice')
    types = (_get(fields, "Types") or "deb").split()
    unknown = [t for t in types if t not in ("deb", "deb-src")]
    if unknown or "deb" not in types:
        raise SourceError(
            f'Types must include "deb" (and nothing but deb, deb-src), got "{" ".join(types)}"'
        )
    fields = _set(fields, "Types", "deb")
    uris = (_get(fields, "URIs") or "").split()
    if not uris:
        raise SourceError("the source has no URIs")
    for uri in uris:
        if not _URI_SCHEME.match(uri):
            raise SourceError(f'URI "{uri}" has no scheme (such as http:// or file://)')
    suites = (_get(fields, "Suites") or "").split()
    if not suites:
        if not suite:
            raise SourceError(f"{uris[0]}: no suite; give Suites here or `suite` in the treefile")
        suites = [suite]
        fields = _set(fields, "Suites", suite)
    flat = any(s.endswith("/") for s in suites)
    has_components = bool((_get(fields, "Components") or "").split())
    if flat and has_components:
        raise SourceError(f'suite "{suites[0]}" is an exact path, so Components must be left out')
    if not flat and not has_components:
        if not components:
            raise SourceError(f"{uris[0]}: no components; give Components here or in the treefile")
        fields = _set(fields, "Components", " ".join(components))
    signed_by = _get(fields, "Signed-By")
    if signed_by is not None:
        fields = _set(fields, "Signed-By", _resolve_signed_by(signed_by, base_dir))
    return _ordered(fields)


def _resolve_signed_by(value: str, base_dir: Path) -> str:
    """Normalize an embedded key, or make key file paths absolute and check they exist."""
    if _KEY_BEGIN in value:
        lines = [line.strip() for line in value.strip().splitlines()]
        if lines[0] != _KEY_BEGIN or lines[-1] != _KEY_END:
            raise SourceError(
                f"the embedded key in Signed-By must run from {_KEY_BEGIN} to {_KEY_END}"
            )
        return "\n".join(lines)
    items = value.replace(",", " ").split()
    if not items:
        raise SourceError("Signed-By is empty")
    resolved = []
    for item in items:
        path = Path(item) if os.path.isabs(item) else base_dir / item
        if _FINGERPRINT.match(item) and not path.exists():
            resolved.append(item)  # a key fingerprint, not a file
            continue
        if not path.is_file():
            raise SourceError(f'key file "{item}" named in Signed-By does not exist ({path})')
        resolved.append(os.path.abspath(path))
    return " ".join(resolved)


# --- the one-line format --------------------------------------------------------------


def _parse_one_line(line: str) -> tuple[str, Paragraph]:
    """`deb [opt=v,...] URI [SUITE [COMPONENT...]]` -> (type, deb822 fields)."""
    match = _ONE_LINE.match(line)
    if not match:
        raise SourceError(f'"{line}" is not a source line (deb [options] URI SUITE COMPONENT...)')
    words = match["rest"].split()
    if not words:
        raise SourceError(f'"{line}" names no URI')
    fields: Paragraph = [("Types", match["type"]), ("URIs", words[0])]
    if len(words) > 1:
        fields.append(("Suites", words[1]))
    if len(words) > 2:
        fields.append(("Components", " ".join(words[2:])))
    for option in (match["options"] or "").split():
        fields.append(_one_line_option(option))
    return match["type"], fields


def _one_line_option(option: str) -> tuple[str, str]:
    key, sep, value = option.partition("=")
    if not sep or not value:
        raise SourceError(f'option "{option}" is not key=value')
    suffix = ""
    # apt's "arch+=i386" / "arch-=i386" are Architectures-Add / -Remove in deb822.
    if key.endswith(("+", "-")):
        suffix = "-Add" if key.endswith("+") else "-Remove"
        key = key[:-1]
    name = _canonical_field(key) + suffix if key.lower() in _ONE_LINE_KEYS else ""
    if name.lower() not in _FIELDS or name in _FIRST_FIELDS:
        raise SourceError(f'unknown option "{option}"')
    if name in _LIST_FIELDS:
        value = " ".join(value.split(","))
    return name, value


# --- deb822 ----------------------------------------------------------------------------


def parse_deb822(text: str) -> list[Paragraph]:
    """Paragraphs of a deb822 text; a SourceError message starts with the line number."""
    paragraphs: list[Paragraph] = []
    current: Paragraph = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                paragraphs.append(current)
                current = []
            continue
        if line[0] in " \t":
            if not current:
                raise SourceError(f"{lineno}: continuation line without a field")
            name, value = current[-1]
            more = line.strip()
            # " ." stands for an empty line inside a multi-line value.
            more = "" if more == "." else more
            current[-1] = (name, f"{value}\n{more}" if value else more)
            continue
        name, sep, value = line.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", name.strip()):
            raise SourceError(f'{lineno}: expected "Field: value", got "{line.strip()}"')
        current.append((name.strip(), value.strip()))
    if current:
        paragraphs.append(current)
    return paragraphs


def render_stanza(fields: Paragraph) -> str:
    """deb822 text of one paragraph, without a trailing newline."""
    lines = []
    for name, value in fields:
        if "\n" in value:
            lines.append(f"{name}:")
            lines += [f" {line}" if line else " ." for line in value.split("\n")]
        else:
            lines.append(f"{name}: {value}")
    return "\n".join(lines)


def _get(fields: Paragraph, name: str) -> str | None:
    for key, value in fields:
        if key.lower() == name.lower():
            return value
    return None


def _set(fields: Paragraph, name: str, value: str) -> Paragraph:
    """`fields` with `name` replaced in place, or appended when absent."""
    if _get(fields, name) is None:
        return [*fields, (name, value)]
    return [(key, value if key.lower() == name.lower() else old) for key, old in fields]


def _ordered(fields: Paragraph) -> Paragraph:
    first = [(name, value) for name in _FIRST_FIELDS if (value := _get(fields, name)) is not None]
    rest = [(name, value) for name, value in fields if name not in _FIRST_FIELDS]
    return first + rest


# --- helpers for callers ----------------------------------------------------------------


def write_sources_file(stanzas: Sequence[str], path: Path) -> None:
    """Write `stanzas` as one .sources file, atomically (readers never see half a file)."""
    text = "\n\n".join(stanza.strip("\n") for stanza in stanzas) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def source_uris(stanzas: Iterable[str]) -> list[str]:
    """Every URI the stanzas name, in order, once each."""
    uris: list[str] = []
    for stanza in stanzas:
        for paragraph in parse_deb822(stanza):
            for uri in (_get(paragraph, "URIs") or "").split():
                if uri not in uris:
                    uris.append(uri)
    return uris


def signed_by_files(stanzas: Iterable[str]) -> list[Path]:
    """The key files (absolute paths) that the stanzas' Signed-By fields name."""
    files: list[Path] = []
    for stanza in stanzas:
        for paragraph in parse_deb822(stanza):
            value = _get(paragraph, "Signed-By") or ""
            if _KEY_BEGIN in value:
                continue
            for item in value.split():
                if os.path.isabs(item) and Path(item) not in files:
                    files.append(Path(item))
    return files
