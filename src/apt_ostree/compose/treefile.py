"""The treefile: what to compose, read from YAML (or JSON) and validated up front.

Every value is checked against the schema below before any work starts, and
an invalid one is reported as a single TreefileError that names the file, the
line and the key, e.g. `tf.yaml:7: unknown key "pakages" (did you mean "packages"?)`.
Line numbers come from the YAML node tree, so values are read from nodes,
never from the constructed Python objects.
"""

from __future__ import annotations

import difflib
import glob
import os
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from apt_ostree.compose import treehash
from apt_ostree.debian import sources as apt_sources
from apt_ostree.errors import SourceError, TreefileError
from apt_ostree.ostree import GLib, OSTree

if TYPE_CHECKING:
    pass

_TAG = "tag:yaml.org,2002:"
_TYPE_NAMES = {
    f"{_TAG}str": "string",
    f"{_TAG}int": "integer",
    f"{_TAG}float": "float",
    f"{_TAG}bool": "boolean",
    f"{_TAG}null": "null",
    f"{_TAG}timestamp": "timestamp",
    f"{_TAG}binary": "binary",
}
_UNIT_SUFFIXES = (
    ".service",
    ".socket",
    ".timer",
    ".path",
    ".target",
    ".mount",
    ".automount",
    ".swap",
    ".slice",
)
# Top-level directories whose content an OSTree commit carries: /usr, /etc
# (stored as /usr/etc) and the merged-/usr symlinks that lead into /usr.
_COMMITTED_TOP_DIRS = {"usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32"}
_ARCHITECTURE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# rpm-ostree keys that have a Debian counterpart under another name.
_RPM_OSTREE_HINTS = {
    "repos": 'APT sources are given with "sources"',
    "repo-packages": 'give the source in "sources" and the package in "packages"',
    "releasever": 'the Debian release is "suite"',
}


@dataclass(frozen=True)
class _Origin:
    """Where a value was written: for error messages that point at it."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class _Value:
    value: Any
    origin: _Origin


@dataclass(frozen=True)
class _Include:
    path: Path
    display: str
    origin: _Origin


# The merged state of a treefile and its includes: scalar keys map to a _Value,
# list keys to a list of _Value (one per item), `metadata` to a dict of _Value.
_Fields = dict[str, Any]


class _Document:
    """One treefile being read: its node tree and where relative paths start."""

    def __init__(self, path: Path, display: str, loader: yaml.SafeLoader) -> None:
        self.path = path
        self.display = display
        self.dir = path.parent
        self.loader = loader

    def origin(self, node: Node) -> _Origin:
        return _Origin(self.display, node.start_mark.line + 1)

    def error(self, node: Node, key: str, message: str) -> TreefileError:
        return TreefileError(f'{self.origin(node)}: key "{key}": {message}')

    def construct(self, node: Node) -> Any:
        return self.loader.construct_object(node, deep=True)


# --- leaf validators: (document, key, node) -> value ----------------------------------


def _type_name(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "list"
    return _TYPE_NAMES.get(node.tag, f"a value tagged {node.tag}")


def _expected(doc: _Document, key: str, node: Node, what: str) -> TreefileError:
    got = _type_name(node)
    hint = ""
    if what == "a string" and got in ("integer", "float", "boolean", "timestamp"):
        hint = " (put it in quotes to make it a string)"
    return doc.error(node, key, f"expected {what}, got {got}{hint}")


def _string(doc: _Document, key: str, node: Node) -> str:
    if not (isinstance(node, ScalarNode) and node.tag == f"{_TAG}str"):
        raise _expected(doc, key, node, "a string")
    if not node.value.strip():
        raise doc.error(node, key, "must not be empty")
    return str(node.value)


def _word(doc: _Document, key: str, node: Node) -> str:
    value = _string(doc, key, node)
    if any(c.isspace() for c in value):
        raise doc.error(node, key, f'"{value}" must not contain whitespace')
    return value


def _boolean(doc: _Document, key: str, node: Node) -> bool:
    if not (isinstance(node, ScalarNode) and node.tag == f"{_TAG}bool"):
        raise _expected(doc, key, node, "a boolean")
    return bool(doc.construct(node))


def _epoch(doc: _Document, key: str, node: Node) -> int:
    if not (isinstance(node, ScalarNode) and node.tag == f"{_TAG}int"):
        raise _expected(doc, key, node, "an integer (seconds since 1970-01-01 UTC)")
    value = int(doc.construct(node))
    if value < 0:
        raise doc.error(node, key, f"{value} is negative")
    return value


def _check_type(doc: _Document, key: str, node: Node) -> str:
    """rpm-ostree's `check-passwd`/`check-groups`: {type: previous|none}."""
    data = doc.construct(node) if isinstance(node, MappingNode) else None
    kind = data.get("type") if isinstance(data, dict) and set(data) == {"type"} else None
    if kind not in ("previous", "none"):
        raise doc.error(node, key, "expected {type: previous} or {type: none}")
    return str(kind)


def _package(doc: _Document, key: str, node: Node) -> str:
    return _word(doc, key, node)


def _unit(doc: _Document, key: str, node: Node) -> str:
    value = _word(doc, key, node)
    # A bare "ssh" would only fail at the end of the compose, when enabling it.
    if "/" in value or not value.endswith(_UNIT_SUFFIXES):
        raise doc.error(node, key, f'"{value}" is not a systemd unit name (such as ssh.service)')
    return value


def _target(doc: _Document, key: str, node: Node) -> str:
    value = _word(doc, key, node)
    if "/" in value or not value.endswith(".target"):
        raise doc.error(node, key, f'"{value}" is not a target (such as multi-user.target)')
    return value


def _architecture(doc: _Document, key: str, node: Node) -> str:
    value = _string(doc, key, node)
    if not _ARCHITECTURE.match(value):
        raise doc.error(node, key, f'"{value}" is not a Debian architecture (such as amd64)')
    return value


def _existing_file(doc: _Document, key: str, node: Node) -> Path:
    value = _string(doc, key, node)
    path = _absolute(doc.dir, value)
    if not path.is_file():
        raise doc.error(node, key, f'"{value}" does not exist or is not a file ({path})')
    return path


def _tree_path(doc: _Document, key: str, node: Node) -> str:
    """A path inside the composed tree, made absolute ("usr/x" and "/usr/x" both work)."""
    value = _string(doc, key, node)
    if ".." in value.split("/"):
        raise doc.error(node, key, f'"{value}" must not contain ".."')
    path = posixpath.normpath("/" + value.strip("/"))
    if path == "/":
        raise doc.error(node, key, f'"{value}" names the root of the tree')
    return path


def _add_file(doc: _Document, key: str, node: Node) -> tuple[Path, str]:
    if not (isinstance(node, SequenceNode) and len(node.value) == 2):
        got = f"a list of {len(node.value)}" if isinstance(node, SequenceNode) else _type_name(node)
        raise doc.error(node, key, f"expected a [source, destination] pair, got {got}")
    src_node, dest_node = node.value
    src = _string(doc, key, src_node)
    path = _absolute(doc.dir, src)
    if not path.exists():
        raise doc.error(src_node, key, f'source "{src}" does not exist ({path})')
    dest = _tree_path(doc, key, dest_node)
    if dest.split("/")[1] not in _COMMITTED_TOP_DIRS:
        raise doc.error(
            dest_node,
            key,
            f'destination "{dest}" is outside /usr and /etc, the only parts of the tree '
            "that the commit carries (/var and the rest are per machine)",
        )
    return path, dest


def _local_packages(doc: _Document, key: str, node: Node) -> list[Path]:
    """The .deb files a path or glob (relative to the treefile) names, sorted."""
    value = _string(doc, key, node)
    pattern = str(_absolute(doc.dir, value))
    matches = sorted(Path(match) for match in glob.glob(pattern))
    if not matches:
        what = "matches no file" if glob.has_magic(value) else "does not exist"
        raise doc.error(node, key, f'"{value}" {what} ({pattern})')
    for path in matches:
        if not path.is_file() or path.suffix != ".deb":
            raise doc.error(node, key, f'"{value}": {path} is not a .deb file')
    return matches


def _metadata_value(doc: _Document, key: str, node: Node) -> Any:
    scalars = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool")}
    if isinstance(node, ScalarNode) and node.tag in scalars:
        return doc.construct(node)
    if isinstance(node, SequenceNode):
        return [_string(doc, key, item) for item in node.value]
    raise _expected(doc, key, node, "a string, integer, float, boolean or list of strings")


def _source_entry(doc: _Document, key: str, node: Node) -> tuple[Any, Path]:
    """Checked for shape here, converted after the merge (it needs the merged suite)."""
    if isinstance(node, ScalarNode) and node.tag == f"{_TAG}str":
        return node.value, doc.dir
    if isinstance(node, MappingNode):
        return doc.construct(node), doc.dir
    raise _expected(doc, key, node, "a source line, a deb822 stanza or a mapping")


def _absolute(base: Path, value: str) -> Path:
    return Path(os.path.abspath(base / value))


# --- the schema -------------------------------------------------------------------------

_Parser = Callable[[_Document, str, Node], Any]

_SCALAR_KEYS: dict[str, _Parser] = {
    "ref": _string,
    "recommends": _boolean,
    "documentation": _boolean,
    "postprocess-script": _existing_file,
    "default-target": _target,
    "machineid-compat": _boolean,
    "tmp-is-dir": _boolean,
    "automatic-version-prefix": _string,
    "suite": _word,
    "architecture": _architecture,
    "source-date-epoch": _epoch,
    "check-passwd": _check_type,
    "check-groups": _check_type,
}
# Item parsers of the keys whose values are lists.
_LIST_KEYS: dict[str, _Parser] = {
    "packages": _package,
    "exclude-packages": _package,
    "postprocess": _string,
    "add-files": _add_file,
    "remove-files": _tree_path,
    "units": _unit,
    "initramfs-args": _string,
    "components": _word,
    "sources": _source_entry,
    "local-packages": _local_packages,
}
_MAPPING_KEYS: dict[str, _Parser] = {"metadata": _metadata_value}
_ALL_KEYS = ["include", *_SCALAR_KEYS, *_LIST_KEYS, *_MAPPING_KEYS]
# Lists that are sets: a repeated item (e.g. from two includes) is kept once.
_SET_KEYS = ("packages", "exclude-packages", "units", "components")


# --- reading one file ---------------------------------------------------------------


def _compose(text: str, display: str) -> tuple[MappingNode, yaml.SafeLoader]:
    loader = yaml.SafeLoader(_untab_json(text))
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{display}:{mark.line + 1}" if mark else display
        problem = e.problem or e.context or "syntax error"
        raise TreefileError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as e:
        raise TreefileError(f"{display}: invalid YAML: {' '.join(str(e).split())}") from None
    if node is None:
        raise TreefileError(f"{display}: the treefile is empty")
    if not isinstance(node, MappingNode):
        raise TreefileError(
            f"{display}:{node.start_mark.line + 1}: expected a mapping of keys at the top, "
            f"got {_type_name(node)}"
        )
    return node, loader


def _untab_json(text: str) -> str:
    """Tabs outside strings as spaces: JSON allows tab indentation, PyYAML does not.

    Only for JSON-looking text; one tab becomes one space, so lines and columns stay.
    """
    if not text.lstrip().startswith(("{", "[")) or "\t" not in text:
        return text
    out = []
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "\t":
            c = " "
        out.append(c)
    return "".join(out)


def _check_duplicate_keys(node: Node, display: str, seen: set[int] | None = None) -> None:
    """Reject a key given twice in one mapping, anywhere in the document."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias of a node already checked
        return
    seen.add(id(node))
    if isinstance(node, MappingNode):
        first: dict[Any, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if isinstance(key, ScalarNode):
                if key.value in first:
                    raise TreefileError(
                        f'{display}:{line}: duplicate key "{key.value}" '
                        f"(first at line {first[key.value]})"
                    )
                first[key.value] = line
            _check_duplicate_keys(value, display, seen)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, display, seen)


def _read_document(path: Path, display: str) -> tuple[_Fields, list[_Include]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise TreefileError(f"{display}: cannot read the treefile: {e.strerror}") from None
    except UnicodeDecodeError:
        raise TreefileError(f"{display}: the treefile is not UTF-8 text") from None
    root, loader = _compose(text, display)
    try:
        _check_duplicate_keys(root, display)
        doc = _Document(path, display, loader)
        fields: _Fields = {}
        includes: list[_Include] = []
        for key_node, value_node in root.value:
            key = _top_level_key(doc, key_node)
            if key == "include":
                includes = _includes(doc, value_node)
            else:
                fields[key] = _parse_key(doc, key, value_node)
        return fields, includes
    finally:
        loader.dispose()


def _top_level_key(doc: _Document, node: Node) -> str:
    if not (isinstance(node, ScalarNode) and node.tag == f"{_TAG}str"):
        raise TreefileError(f"{doc.origin(node)}: keys must be strings, got {_type_name(node)}")
    key = str(node.value)
    if key not in _ALL_KEYS:
        message = f'{doc.origin(node)}: unknown key "{key}"'
        if key in _RPM_OSTREE_HINTS:
            message += f" ({_RPM_OSTREE_HINTS[key]})"
        elif close := difflib.get_close_matches(key, _ALL_KEYS, n=1):
            message += f' (did you mean "{close[0]}"?)'
        raise TreefileError(message)
    return key


def _parse_key(doc: _Document, key: str, node: Node) -> Any:
    if key in _SCALAR_KEYS:
        return _Value(_SCALAR_KEYS[key](doc, key, node), doc.origin(node))
    if key in _LIST_KEYS:
        if not isinstance(node, SequenceNode):
            raise _expected(doc, key, node, "a list")
        parse = _LIST_KEYS[key]
        return [_Value(parse(doc, key, item), doc.origin(item)) for item in node.value]
    if not isinstance(node, MappingNode):
        raise _expected(doc, key, node, "a mapping")
    entries = {}
    for name_node, value_node in node.value:
        name = _string(doc, key, name_node)
        entries[name] = _Value(_MAPPING_KEYS[key](doc, key, value_node), doc.origin(value_node))
    return entries


def _includes(doc: _Document, node: Node) -> list[_Include]:
    items = node.value if isinstance(node, SequenceNode) else [node]
    if isinstance(node, ScalarNode) and node.tag != f"{_TAG}str":
        raise _expected(doc, "include", node, "a file name or a list of file names")
    includes = []
    for item in items:
        name = _string(doc, "include", item)
        path = _absolute(doc.dir, name)
        if not path.is_file():
            raise doc.error(item, "include", f'"{name}" does not exist or is not a file ({path})')
        display = os.path.normpath(os.path.join(os.path.dirname(doc.display), name))
        includes.append(_Include(path, display, doc.origin(item)))
    return includes


# --- includes and merging -------------------------------------------------------------


def _load_merged(
    path: Path,
    display: str,
    chain: tuple[tuple[Path, str], ...],
    included: dict[Path, _Origin],
) -> _Fields:
    """The fields of `path` with its includes merged in (included files first).

    `chain` is the path of includes that led here (for cycles); `included` is
    every file included so far, since rpm-ostree refuses a file included twice.
    """
    own, includes = _read_document(path, display)
    chain = (*chain, (path.resolve(), display))
    merged: _Fields = {}
    for include in includes:
        key = include.path.resolve()
        if key in (p for p, _ in chain):
            cycle = " -> ".join([*(d for _, d in chain), include.display])
            raise TreefileError(f'{include.origin}: key "include": include cycle: {cycle}')
        if key in included:
            raise TreefileError(
                f'{include.origin}: key "include": "{include.display}" is already '
                f"included at {included[key]}"
            )
        included[key] = include.origin
        _merge_into(merged, _load_merged(include.path, include.display, chain, included))
    _merge_into(merged, own)
    return merged


def _merge_into(merged: _Fields, fields: _Fields) -> None:
    """rpm-ostree's include rules: lists concatenate, mappings merge, scalars override."""
    for key, value in fields.items():
        if key in _LIST_KEYS:
            merged[key] = [*merged.get(key, []), *value]
        elif key in _MAPPING_KEYS:
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value


# --- the result ----------------------------------------------------------------------


@dataclass
class Treefile:
    """A loaded, merged and validated treefile. Paths are absolute."""

    path: Path
    ref: str
    packages: list[str] = field(default_factory=list)
    exclude_packages: list[str] = field(default_factory=list)
    recommends: bool = True
    documentation: bool = True
    postprocess_script: Path | None = None
    postprocess: list[str] = field(default_factory=list)
    add_files: list[tuple[Path, str]] = field(default_factory=list)
    remove_files: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    default_target: str | None = None
    initramfs_args: list[str] = field(default_factory=list)
    machineid_compat: bool = True
    tmp_is_dir: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    automatic_version_prefix: str | None = None
    suite: str | None = None
    components: list[str] = field(default_factory=lambda: ["main"])
    architecture: str | None = None
    source_date_epoch: int | None = None
    check_passwd: str = "previous"
    check_groups: str = "previous"
    sources: list[str] | None = None
    local_packages: list[Path] = field(default_factory=list)
    merged: dict[str, Any] = field(default_factory=dict)

    def treefile_sha256(self) -> str:
        """sha256 of the merged treefile (canonical JSON), wherever its files lie:
        the same treefile in another checkout directory has the same hash."""
        return treehash.treefile_sha256(self.merged)

    def inputs_sha256(self) -> str:
        """sha256 of the merged treefile plus the content of every file it names
        (compose/treehash.py)."""
        try:
            return treehash.inputs_sha256(self.merged, self.input_files())
        except OSError as e:
            raise TreefileError(
                f"{self.path}: cannot read input {e.filename}: {e.strerror}"
            ) from None

    def input_files(self) -> list[Path]:
        """The files and directories outside the treefiles that the compose reads."""
        files = [self.postprocess_script] if self.postprocess_script else []
        files += [src for src, _ in self.add_files]
        files += apt_sources.signed_by_files(self.sources or [])
        files += self.local_packages
        return files


def load_treefile(path: Path) -> Treefile:
    """Read, merge (includes) and validate a treefile; raise TreefileError on any problem."""
    display = str(path)
    absolute = Path(os.path.abspath(path))
    if not absolute.is_file():
        raise TreefileError(f"{display}: no such treefile")
    fields = _load_merged(absolute, display, (), {})
    return _build(absolute, display, fields)


def _build(path: Path, display: str, fields: _Fields) -> Treefile:
    def scalar(key: str, default: Any = None) -> Any:
        return fields[key].value if key in fields else default

    def items(key: str) -> list[Any]:
        values = [v.value for v in fields.get(key, [])]
        if key in _SET_KEYS:
            values = list(dict.fromkeys(values))
        return values

    ref = _checked_ref(fields, display)
    _check_excludes(fields)
    components = items("components") if "components" in fields else ["main"]
    suite = scalar("suite")
    tf = Treefile(
        path=path,
        ref=ref,
        packages=items("packages"),
        exclude_packages=items("exclude-packages"),
        recommends=scalar("recommends", True),
        documentation=scalar("documentation", True),
        postprocess_script=scalar("postprocess-script"),
        postprocess=items("postprocess"),
        add_files=items("add-files"),
        remove_files=items("remove-files"),
        units=items("units"),
        default_target=scalar("default-target"),
        initramfs_args=items("initramfs-args"),
        machineid_compat=scalar("machineid-compat", True),
        tmp_is_dir=scalar("tmp-is-dir", False),
        metadata={k: v.value for k, v in fields.get("metadata", {}).items()},
        automatic_version_prefix=scalar("automatic-version-prefix"),
        suite=suite,
        components=components,
        architecture=scalar("architecture"),
        source_date_epoch=scalar("source-date-epoch"),
        check_passwd=scalar("check-passwd", "previous"),
        check_groups=scalar("check-groups", "previous"),
        sources=_converted_sources(fields, suite, components) if "sources" in fields else None,
        # Each item is the list of files its glob matched.
        local_packages=list(dict.fromkeys(p for paths in items("local-packages") for p in paths)),
    )
    tf.merged = _plain_data(tf)
    return tf


def _checked_ref(fields: _Fields, display: str) -> str:
    if "ref" not in fields:
        raise TreefileError(f'{display}: missing required key "ref"')
    ref: _Value = fields["ref"]
    try:
        OSTree.validate_rev(ref.value)
    except GLib.Error:
        raise TreefileError(
            f'{ref.origin}: key "ref": "{ref.value}" is not a valid OSTree ref '
            "(use letters, digits, '_', '-', '.', and '/' between parts, such as debian/12/x86_64)"
        ) from None
    return str(ref.value)


def _check_excludes(fields: _Fields) -> None:
    packages = {v.value for v in fields.get("packages", [])}
    for excluded in fields.get("exclude-packages", []):
        if excluded.value in packages:
            raise TreefileError(
                f'{excluded.origin}: key "exclude-packages": "{excluded.value}" '
                'is also in "packages"'
            )


def _converted_sources(fields: _Fields, suite: str | None, components: list[str]) -> list[str]:
    stanzas = []
    for item in fields["sources"]:
        entry, base_dir = item.value
        try:
            stanza = apt_sources.parse_source_entry(
                entry, base_dir, suite=suite, components=components
            )
        except SourceError as e:
            raise TreefileError(f'{item.origin}: key "sources": {e}') from None
        stanzas.append(stanza)
    return stanzas


def _plain_data(tf: Treefile) -> dict[str, Any]:
    """The merged treefile as JSON-able data, keys as written in treefiles."""
    data: dict[str, Any] = {
        "ref": tf.ref,
        "packages": tf.packages,
        "exclude-packages": tf.exclude_packages,
        "recommends": tf.recommends,
        "documentation": tf.documentation,
        "postprocess-script": str(tf.postprocess_script) if tf.postprocess_script else None,
        "postprocess": tf.postprocess,
        "add-files": [[str(src), dest] for src, dest in tf.add_files],
        "remove-files": tf.remove_files,
        "units": tf.units,
        "default-target": tf.default_target,
        "initramfs-args": tf.initramfs_args,
        "machineid-compat": tf.machineid_compat,
        "tmp-is-dir": tf.tmp_is_dir,
        "metadata": tf.metadata,
        "automatic-version-prefix": tf.automatic_version_prefix,
        "suite": tf.suite,
        "components": tf.components,
        "architecture": tf.architecture,
        "sources": tf.sources,
        # Left out at their defaults, so that treefiles without them keep their hashes.
        "source-date-epoch": tf.source_date_epoch,
        "check-passwd": tf.check_passwd if tf.check_passwd != "previous" else None,
        "check-groups": tf.check_groups if tf.check_groups != "previous" else None,
        # Left out when empty, so that treefiles without it keep their hashes.
        "local-packages": [str(path) for path in tf.local_packages] or None,
    }
    # Unset optional values are left out, as rpm-ostree's --print-only does.
    return {key: value for key, value in data.items() if value is not None}
