"""Resolve package sets with libapt-pkg: a fresh tree, or a layer on an installed base.

libapt-pkg's configuration is process-global and is read from the host's
/etc/apt on initialisation, so the work runs in a child process
(`python -m apt_ostree.debian.resolve`) that points `APT_CONFIG` at a file in
the caller's state directory before apt_pkg is initialised. The parent sends
one JSON request on the child's stdin (its "op" says what to do: "tree",
"layer", "search", "refresh" or "fetch"); the child answers with JSON lines on
its stdout: `{"progress": ...}` while fetching, then one answer or
`{"error": ..., "message": ...}`. Anything on the child's stderr is a bug's
traceback and is shown as such.

The state directory persists between calls: index files are fetched with
If-Modified-Since and the binary package cache is reused while the sources
are unchanged, so a second resolve against the same sources is fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from apt_ostree.debian.fetch import FetchError, cache_name, cached_package, sha256_file
from apt_ostree.errors import ResolveError, SourceError

if TYPE_CHECKING:
    from apt_ostree.reporter import Reporter

_CHILD_MODULE = "apt_ostree.debian.resolve"
_ERRORS: dict[str, type[ResolveError | SourceError]] = {
    "ResolveError": ResolveError,
    "SourceError": SourceError,
    "FetchError": FetchError,
}


@dataclass(frozen=True, order=True)
class PackageInfo:
    """One package of a tree, as dpkg names it (arch is "all" for arch-independent ones)."""

    name: str
    version: str
    arch: str


class ResolverCrash(RuntimeError):
    """The resolver process died without an answer: a bug, shown with its traceback."""


@dataclass(frozen=True)
class PlannedPackage:
    """One package a layer installs, and where its .deb comes from.

    `uri` and `sha256` come from the signed index (for a local .deb: its own
    path and checksum); `filename` is its name in the download cache;
    `requested` says whether the user asked for it or it is a dependency;
    `replaces` is the base commit's version of a package that a local .deb
    replaces (override replace), None for a package the layer adds.
    """

    name: str
    version: str
    arch: str
    uri: str
    filename: str
    size: int
    sha256: str
    requested: bool
    local_path: str | None = None
    replaces: str | None = None


@dataclass
class LayerPlan:
    """What layering a request on a base commit installs and removes.

    `install` is sorted by name, `remove` (base packages taken out by
    override remove) too; `install` holds the replacements of base packages too
    (override replace: `replaces` set); `inactive` are requests already
    satisfied by the base (with --allow-inactive); `download_size` counts the
    bytes of `install` that are neither local nor in the download cache.
    `statedir` is the APT state the plan was resolved with: fetch_packages()
    downloads with its configuration.
    """

    install: list[PlannedPackage]
    remove: list[PackageInfo]
    inactive: list[str]
    download_size: int
    statedir: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerPlan:
        return cls(
            install=[PlannedPackage(**entry) for entry in data["install"]],
            remove=[PackageInfo(**entry) for entry in data["remove"]],
            inactive=list(data["inactive"]),
            download_size=int(data["download_size"]),
            statedir=str(data["statedir"]),
        )


def _check_arch(arch: str) -> None:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", arch):
        raise ResolveError(f'invalid architecture "{arch}"')


def _answer(request: dict[str, Any], reporter: Reporter | None) -> dict[str, Any]:
    """Run `request` in the child; its answer, or its user-facing error raised."""
    reply = _call_child(request, reporter)
    if "error" in reply:
        raise _ERRORS[reply["error"]](reply["message"])
    return reply


def resolve_tree(
    stanzas: Sequence[str],
    packages: Sequence[str],
    *,
    arch: str,
    statedir: Path,
    exclude: Sequence[str] = (),
    recommends: bool = True,
    essential: bool = True,
    reporter: Reporter | None = None,
) -> list[PackageInfo]:
    """The sorted set of packages a fresh tree with `packages` installed would hold.

    That is what `mmdebstrap --variant=essential --include=<packages>` installs:
    every `Essential: yes` package (when `essential`), `packages`, and their
    dependencies (Recommends too when `recommends`), for `arch`, from `stanzas`
    (deb822 source stanzas) alone. No package in `exclude` may be installed.
    `statedir` is a cache directory owned by the caller and kept between calls.

    Raises SourceError when an index cannot be fetched or verified and
    ResolveError when the request cannot be satisfied.
    """
    _check_arch(arch)
    request = {
        "op": "tree",
        "stanzas": list(stanzas),
        "packages": list(packages),
        "arch": arch,
        "statedir": str(Path(statedir).absolute()),
        "exclude": list(exclude),
        "recommends": recommends,
        "essential": essential,
    }
    reply = _answer(request, reporter)
    return [PackageInfo(*entry) for entry in reply["packages"]]


def resolve_layer(
    stanzas: Sequence[str],
    *,
    status_file: Path,
    arch: str,
    statedir: Path,
    install: Sequence[str],
    remove: Sequence[str] = (),
    local_debs: Sequence[Path] = (),
    replace_local: Sequence[Path] = (),
    allow_inactive: bool = False,
    recommends: bool = False,
    refresh: bool = True,
    cachedir: Path | None = None,
    reporter: Reporter | None = None,
) -> LayerPlan:
    """What installing `install` and `local_debs` and removing `remove` on a base does.

    The base is the dpkg database whose `status_file` is given (a base
    commit's `usr/share/dpkg/database/status`). Requested packages come with
    their dependencies (Recommends only when `recommends`, as rpm-ostree layers
    minimally) from `stanzas`; local .deb files take part in the resolution as
    if they came from a source. No base package may change except by `remove`:
    a request that would upgrade, downgrade or remove one is a ResolveError
    naming both versions. A requested package already in the base is an error,
    or an inactive request with `allow_inactive`.

    `replace_local` are .deb files that replace the base package of the same
    name by their version (override replace); a package that is not in the
    base is an error, and so is one of the base's own version (unless
    `allow_inactive`: then the replacement is inactive and left out).

    With `refresh`, the index files are brought up to date first (as
    resolve_tree does); without, cached ones are used and only missing ones
    fetched. With `cachedir`, `download_size` leaves out what is cached there.
    """
    _check_arch(arch)
    status = Path(status_file).absolute()
    if not status.is_file():
        raise ResolveError(f"the base commit has no dpkg status file at {status}")
    debs = [Path(deb).absolute() for deb in local_debs]
    replacements = [Path(deb).absolute() for deb in replace_local]
    for deb in [*debs, *replacements]:
        if not deb.is_file():
            raise ResolveError(f"{deb}: no such file")
    request = {
        "op": "layer",
        "stanzas": list(stanzas),
        "arch": arch,
        "statedir": str(Path(statedir).absolute()),
        "status": str(status),
        "install": list(install),
        "remove": list(remove),
        "local_debs": [str(deb) for deb in debs],
        "replace_local": [str(deb) for deb in replacements],
        "allow_inactive": allow_inactive,
        "recommends": recommends,
        "refresh": refresh,
    }
    plan = LayerPlan.from_json(_answer(request, reporter)["plan"])
    plan.download_size = sum(
        pkg.size
        for pkg in plan.install
        if pkg.local_path is None and (cachedir is None or cached_package(pkg, cachedir) is None)
    )
    return plan


def fetch_packages(
    plan: LayerPlan,
    *,
    cachedir: Path,
    cache_only: bool = False,
    reporter: Reporter | None = None,
) -> list[Path]:
    """The .deb files of `plan.install`, in its order, downloaded into `cachedir` as needed.

    A cached file is used only when its size and sha256 match the plan's (which
    come from the signed index); anything else is downloaded again by
    libapt-pkg's acquire in the child, with the plan's APT configuration, and
    verified against the same sha256 before it enters the cache. Local .debs
    are used from where they are. With `cache_only`, a package that is not
    cached is an error instead of a download.
    """
    cachedir = Path(cachedir).absolute()
    paths: dict[int, Path] = {}
    missing: list[tuple[int, PlannedPackage]] = []
    for index, pkg in enumerate(plan.install):
        if pkg.local_path is not None:
            paths[index] = Path(pkg.local_path)
        elif (cached := cached_package(pkg, cachedir)) is not None:
            paths[index] = cached
        elif cache_only:
            raise FetchError(
                f'package "{pkg.name}" {pkg.version} is not in the cache (--cache-only)'
            )
        else:
            missing.append((index, pkg))
    if missing:
        request = {
            "op": "fetch",
            "statedir": plan.statedir,
            "cachedir": str(cachedir),
            "packages": [dataclasses.asdict(pkg) for _, pkg in missing],
        }
        reply = _answer(request, reporter)
        for (index, _), path in zip(missing, reply["paths"], strict=True):
            paths[index] = Path(path)
    return [paths[index] for index in range(len(plan.install))]


def search_packages(
    stanzas: Sequence[str],
    terms: Sequence[str],
    *,
    arch: str,
    statedir: Path,
    reporter: Reporter | None = None,
) -> list[tuple[str, str, str]]:
    """(name, version, summary) of the packages whose name or description has every term.

    Matching ignores case. The cached index files are used; missing ones are
    fetched first. Sorted by name.
    """
    _check_arch(arch)
    if not terms:
        raise ResolveError("search needs at least one term")
    request = {
        "op": "search",
        "stanzas": list(stanzas),
        "arch": arch,
        "statedir": str(Path(statedir).absolute()),
        "terms": list(terms),
    }
    return [(name, ver, summary) for name, ver, summary in _answer(request, reporter)["results"]]


def refresh_metadata(
    stanzas: Sequence[str],
    *,
    arch: str,
    statedir: Path,
    force: bool = False,
    reporter: Reporter | None = None,
) -> None:
    """Bring the index files of `stanzas` up to date; `force` drops the cached ones first."""
    _check_arch(arch)
    request = {
        "op": "refresh",
        "stanzas": list(stanzas),
        "arch": arch,
        "statedir": str(Path(statedir).absolute()),
        "force": force,
    }
    _answer(request, reporter)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The child imports this package from wherever the parent did.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    # The child classifies apt's messages, so they must be untranslated.
    env["LC_ALL"] = "C.UTF-8"
    env.pop("APT_CONFIG", None)
    return env


def _call_child(request: dict[str, Any], reporter: Reporter | None) -> dict[str, Any]:
    # stderr goes to a file: a pipe could fill up while we read stdout.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog:
        proc = subprocess.Popen(
            [sys.executable, "-m", _CHILD_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errlog,
            env=_child_env(),
            text=True,
            encoding="utf-8",
        )
        try:
            reply = _exchange(proc, request, reporter)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        status = proc.wait()
        if reply is None or status != 0:
            errlog.seek(0)
            raise ResolverCrash(
                f"the resolver process failed (exit status {status}):\n{errlog.read()}"
            )
    return reply


def _exchange(
    proc: subprocess.Popen[str], request: dict[str, Any], reporter: Reporter | None
) -> dict[str, Any] | None:
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(request))
        proc.stdin.close()
    except BrokenPipeError:
        # The child died at startup; its stderr tells why.
        return None
    reply = None
    progressed = False
    for line in proc.stdout:
        message = json.loads(line)
        if "progress" in message:
            if reporter is not None:
                reporter.progress(message["progress"])
                progressed = True
        else:
            reply = message
    if progressed and reporter is not None:
        reporter.progress_done()
    return reply


# --- the child process ----------------------------------------------------------------
#
# Everything below runs in the child only. apt_pkg is imported lazily so that
# importing this module for PackageInfo or resolve_tree() never initialises
# libapt-pkg in the caller's process.

if TYPE_CHECKING:
    import apt_pkg
    from apt.progress.base import AcquireProgress


def _apt_conf(statedir: Path, arch: str) -> str:
    state = statedir / "state"
    options = {
        # Every path libapt-pkg would read or write on the host, moved into statedir.
        "Dir::Etc": f"{statedir / 'etc'}/",
        "Dir::Etc::main": "apt.conf",
        "Dir::Etc::parts": "apt.conf.d",
        "Dir::Etc::sourcelist": "sources.list",
        "Dir::Etc::sourceparts": "sources.list.d",
        "Dir::Etc::preferences": "preferences",
        "Dir::Etc::preferencesparts": "preferences.d",
        "Dir::Etc::trusted": "trusted.gpg",
        "Dir::Etc::trustedparts": "trusted.gpg.d",
        "Dir::State": f"{state}/",
        "Dir::State::lists": f"{state / 'lists'}/",
        "Dir::State::status": str(state / "status"),
        "Dir::Cache": f"{statedir / 'cache'}/",
        "Dir::Log": f"{statedir / 'log'}/",
        "APT::Architecture": arch,
        "APT::Install-Suggests": "false",
        # The state directory and local file: repositories may not be readable
        # by the _apt user that apt would otherwise drop to.
        "APT::Sandbox::User": "root",
        "Acquire::Languages": "none",
        "Acquire::AllowInsecureRepositories": "false",
        "Acquire::AllowDowngradeToInsecureRepositories": "false",
        "Acquire::AllowWeakRepositories": "false",
        # apt's default (3, with growing delays) makes an unreachable source
        # take 7 s to report; one retry still rides out a dropped connection.
        "Acquire::Retries": "1",
    }
    lines = [f"{key} {_quote(value)};" for key, value in options.items()]
    lines.append(f"APT::Architectures {{ {_quote(arch)}; }};")
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    # apt.conf has no escapes; the values are paths and checked names.
    if '"' in value or "\n" in value:
        raise ValueError(f"cannot write {value!r} into apt.conf")
    return f'"{value}"'


def _write_if_changed(path: Path, text: str) -> None:
    # libapt-pkg rebuilds its binary cache when the sources file is newer than
    # it, so an unchanged file must keep its mtime.
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _prepare_statedir(request: dict[str, Any]) -> Path:
    statedir = Path(request["statedir"])
    for sub in (
        "etc/apt.conf.d",
        "etc/preferences.d",
        "etc/sources.list.d",
        "etc/trusted.gpg.d",
        "state/lists/partial",
        "cache/archives/partial",
        "log",
    ):
        (statedir / sub).mkdir(parents=True, exist_ok=True)
    status = statedir / "state" / "status"
    if not status.exists():
        # A fresh tree: nothing is installed.
        status.touch()
    conf = statedir / "apt.conf"
    _write_if_changed(conf, _apt_conf(statedir, request["arch"]))
    sources = "\n".join(stanza.strip("\n") + "\n" for stanza in request["stanzas"])
    _write_if_changed(statedir / "etc" / "sources.list.d" / "apt-ostree.sources", sources)
    # Local .debs are a source of one layer resolution only (see _local_repo).
    (statedir / "etc" / "sources.list.d" / _LOCAL_SOURCES).unlink(missing_ok=True)
    return conf


@contextlib.contextmanager
def _locked(statedir: Path) -> Iterator[None]:
    """Hold the state directory: two resolutions must not write into it at once."""
    statedir.mkdir(parents=True, exist_ok=True)
    with (statedir / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


_LOCAL_SOURCES = "local-debs.sources"
_RELEASE_FILES = ("InRelease", "Release")


@dataclass(frozen=True)
class _LocalDeb:
    """A .deb given on the command line, as its control file and its bytes say."""

    path: str
    name: str
    version: str
    arch: str
    size: int
    sha256: str


@dataclass(frozen=True)
class _LocalRepo:
    stanza: str
    sources: Path
    uri: str
    debs: list[_LocalDeb]


def _read_local_deb(path: str, arch: str) -> tuple[_LocalDeb, str]:
    """`path`'s identity and its Packages stanza (control fields, size and checksum)."""
    import apt_inst
    import apt_pkg

    try:
        control = apt_inst.DebFile(path).control.extractdata("control").decode()
        section = apt_pkg.TagSection(control)
        name, version, deb_arch = section["Package"], section["Version"], section["Architecture"]
    except (SystemError, apt_pkg.Error, LookupError, UnicodeDecodeError) as e:
        raise ResolveError(f"{path} is not a valid .deb package: {e}") from None
    if deb_arch not in (arch, "all"):
        raise ResolveError(f"{path} is for architecture {deb_arch}, not {arch}")
    size = Path(path).stat().st_size
    digest = sha256_file(Path(path))
    stanza = (
        control.strip("\n") + f"\nFilename: ./{Path(path).name}\nSize: {size}\nSHA256: {digest}\n"
    )
    return _LocalDeb(path, name, version, deb_arch, size, digest), stanza


def _local_repo(statedir: Path, paths: Sequence[str], arch: str) -> _LocalRepo | None:
    """Make `paths` a flat, trusted file: source in statedir, for this resolution only.

    That is what `apt install ./x.deb` does with its "volatile" files, which
    python-apt does not reach: the control data takes part in the resolution
    as if the package came from a source. The repository's directory is named
    by its content, so that its index is never mistaken for a cached one of
    other .debs (the file: method compares mtimes in seconds).
    """
    import apt_pkg

    root = statedir / "local-debs"
    debs: list[_LocalDeb] = []
    stanzas: list[str] = []
    for path in paths:
        deb, stanza = _read_local_deb(path, arch)
        if twin := next((d for d in debs if d.name == deb.name), None):
            raise ResolveError(f'package "{deb.name}" is given twice: {twin.path} and {deb.path}')
        debs.append(deb)
        stanzas.append(stanza)
    packages = "\n".join(stanzas)
    repo = root / hashlib.sha256(packages.encode()).hexdigest()[:16] if debs else None
    # Earlier resolutions' repositories and their lists are stale.
    if root.is_dir():
        for old in root.iterdir():
            if old != repo:
                shutil.rmtree(old)
    lists = statedir / "state" / "lists"
    stale = apt_pkg.uri_to_filename(f"file:{root}/")
    current = apt_pkg.uri_to_filename(f"file:{repo}/") if repo else None
    for listed in lists.iterdir():
        if listed.name.startswith(stale) and not (current and listed.name.startswith(current)):
            listed.unlink()
    if repo is None:
        return None
    if not (repo / "Release").is_file():
        repo.mkdir(parents=True, exist_ok=True)
        (repo / "Packages").write_text(packages, encoding="utf-8")
        release = (
            "Origin: apt-ostree\n"
            "Label: local packages\n"
            f"Date: {email.utils.formatdate(usegmt=True)}\n"
            "SHA256:\n"
            f" {hashlib.sha256(packages.encode()).hexdigest()} {len(packages.encode())} Packages\n"
        )
        (repo / "Release.tmp").write_text(release, encoding="utf-8")
        (repo / "Release.tmp").replace(repo / "Release")
    uri = f"file:{repo}/"
    # Trusted: these files are the user's own, given on the command line.
    stanza = f"Types: deb\nURIs: {uri}\nSuites: ./\nTrusted: yes\n"
    sources = statedir / "etc" / "sources.list.d" / _LOCAL_SOURCES
    sources.write_text(stanza, encoding="utf-8")
    return _LocalRepo(stanza=stanza, sources=sources, uri=uri, debs=debs)


class _FetchProgress:
    """The acquire progress protocol of python-apt, sent to the parent as JSON lines."""

    current_bytes = current_cps = fetched_bytes = last_bytes = total_bytes = 0.0
    current_items = elapsed_time = total_items = 0

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._last = ""

    def _send(self, text: str) -> None:
        # An item is announced again for each stage (download, decompress).
        if text == self._last:
            return
        self._last = text
        self._out.write(json.dumps({"progress": text}) + "\n")
        self._out.flush()

    def fetch(self, item: apt_pkg.AcquireItemDesc) -> None:
        self._send(f"Get: {item.description}")

    def ims_hit(self, item: apt_pkg.AcquireItemDesc) -> None:
        self._send(f"Hit: {item.description}")

    def fail(self, item: apt_pkg.AcquireItemDesc) -> None:
        self._send(f"Err: {item.description}")

    def done(self, item: apt_pkg.AcquireItemDesc) -> None:
        pass

    def media_change(self, media: str, drive: str) -> bool:
        return False

    def pulse(self, owner: apt_pkg.Acquire) -> bool:
        return True

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def _split_apt_errors(text: str) -> list[str]:
    """python-apt joins pending messages as "E:one, W:two": split them again."""
    return [m.strip() for m in re.split(r"(?:^|, )(?=[EWNID]:)", text) if m.strip()]


def _source_names(stanzas: Iterable[str]) -> dict[str, str]:
    """The URIs as the stanzas spell them, by apt's normal form ("file:/x/")."""
    import apt_pkg

    names: dict[str, str] = {}
    for stanza in stanzas:
        section = apt_pkg.TagSection(stanza.strip("\n") + "\n")
        for uri in section.get("URIs", "").split():
            names[_normal_uri(uri)] = uri
    return names


def _normal_uri(uri: str) -> str:
    if uri.startswith("file:"):
        uri = "file:/" + uri[len("file:") :].lstrip("/")
    return uri.rstrip("/") + "/"


def _source_failure(
    meta: apt_pkg.MetaIndex, items: list[apt_pkg.AcquireItem], messages: list[str]
) -> str | None:
    """Why `meta` could not be fetched and verified, or None when it was."""
    import apt_pkg

    label = f"{meta.uri.rstrip('/')} {meta.dist}"
    prefix = meta.uri + (meta.dist if meta.dist.endswith("/") else f"dists/{meta.dist}/")
    failed = [
        item
        for item in items
        if item.desc_uri.startswith(prefix)
        and item.status != apt_pkg.AcquireItem.STAT_DONE
        and item.error_text
    ]
    mine = [m for m in messages if f"'{label} " in m or f" {label} " in m]
    texts = [item.error_text for item in failed] + mine
    for text in texts:
        if keys := re.findall(r"NO_PUBKEY ([0-9A-Fa-f]+)", text):
            return f"is signed by an unknown key (NO_PUBKEY {', '.join(keys)})"
    for item in failed:
        if item.status == apt_pkg.AcquireItem.STAT_TRANSIENT_NETWORK_ERROR:
            return f"is unreachable: {item.error_text}"
    for text in texts:
        if "is not signed" in text:
            return "is not signed"
    for text in texts:
        if "GPG error" in text or "signature" in text.lower():
            return f"failed signature verification: {_strip_severity(text)}"
    if failed:
        item = failed[0]
        return f"could not be fetched: {item.desc_uri}: {item.error_text}"
    if mine:
        return f"could not be fetched: {_strip_severity(mine[0])}"
    return None


def _strip_severity(message: str) -> str:
    return message[2:] if message[1:2] == ":" else message


def fetch_indexes(stanzas: Sequence[str], out: IO[str]) -> None:
    """Bring the index files of `stanzas` up to date; any failure is fatal.

    `apt update` only warns about a source it could not fetch and goes on with
    old or no lists; a tree composed from half the sources would be wrong, so
    every failure becomes one SourceError naming each failing source.
    """
    import apt_pkg

    sources = apt_pkg.SourceList()
    try:
        sources.read_main_list()
    except apt_pkg.Error as e:
        raise SourceError(f"invalid APT sources: {'; '.join(_split_apt_errors(str(e)))}") from e
    if not sources.list:
        raise SourceError("no APT sources are configured")
    # Duck-typed: subclassing apt's AcquireProgress would import all of `apt`.
    fetcher = apt_pkg.Acquire(cast("AcquireProgress", _FetchProgress(out)))
    # all=False: all=True also queues every index directly (for --print-uris),
    # fetching them twice.
    sources.get_indexes(fetcher, False)  # type: ignore[attr-defined]  # not in the stubs
    messages: list[str] = []
    try:
        fetcher.run()
    except apt_pkg.Error as e:
        messages = _split_apt_errors(str(e))
    items = list(fetcher.items)
    names = _source_names(stanzas)
    failures = []
    for meta in sources.list:
        reason = _source_failure(meta, items, messages)
        if reason is not None:
            uri = names.get(_normal_uri(meta.uri), meta.uri)
            failures.append(f"source {uri} {meta.dist} {reason}")
    errors = [_strip_severity(m) for m in messages if m.startswith("E:")]
    if not failures and errors:
        failures = errors
    if failures:
        raise SourceError("; ".join(failures))


def _lists_complete(skip_uri: str | None) -> bool:
    """Whether every configured source (but `skip_uri`) has its index files cached.

    A source's index list names indexes that its Release file may not have
    (binary-all), so "cached" means: the Release file and some package index.
    """
    import apt_pkg

    sources = apt_pkg.SourceList()
    try:
        sources.read_main_list()
    except apt_pkg.Error:
        # fetch_indexes() reports it.
        return False
    lists = Path(apt_pkg.config.find_dir("Dir::State::lists"))
    metas = [meta for meta in sources.list if _normal_uri(meta.uri) != skip_uri]
    for meta in metas:
        dist = meta.dist if meta.dist.endswith("/") else f"dists/{meta.dist}/"
        releases = [apt_pkg.uri_to_filename(meta.uri + dist + name) for name in _RELEASE_FILES]
        if not any((lists / name).is_file() for name in releases):
            return False
        if not any(index.exists for index in meta.index_files):
            return False
    return bool(metas)


@contextlib.contextmanager
def _only_sources(sources: Path) -> Iterator[None]:
    """Make `sources` libapt-pkg's only sources file for the duration of the block."""
    import apt_pkg

    keys = ("Dir::Etc::sourcelist", "Dir::Etc::sourceparts")
    saved = {key: apt_pkg.config.find(key) for key in keys}
    apt_pkg.config.set("Dir::Etc::sourcelist", str(sources))
    # A directory that does not exist: no parts at all.
    apt_pkg.config.set("Dir::Etc::sourceparts", str(sources.with_suffix(".none")))
    try:
        yield
    finally:
        for key, value in saved.items():
            apt_pkg.config.set(key, value)


def update_lists(
    stanzas: Sequence[str], out: IO[str], *, refresh: bool, local: _LocalRepo | None = None
) -> None:
    """Fetch the index files: all of them with `refresh`, else only the missing ones.

    A local repository's index is new with every set of local .debs, so it is
    fetched (copied) even when the other sources' cached lists are used.
    """
    all_stanzas = [*stanzas, local.stanza] if local else list(stanzas)
    if refresh or not _lists_complete(_normal_uri(local.uri) if local else None):
        fetch_indexes(all_stanzas, out)
    elif local is not None:
        with _only_sources(local.sources):
            fetch_indexes([local.stanza], out)


@dataclass
class _Request:
    """One resolution: the caches, and why each package must be installed."""

    cache: apt_pkg.Cache
    depcache: apt_pkg.DepCache
    requested: list[apt_pkg.Package]
    essential: list[apt_pkg.Package]
    excluded: dict[str, apt_pkg.Package]

    def candidate(self, pkg: apt_pkg.Package) -> apt_pkg.Version | None:
        # A failed mark_install discards the DepCache's candidate; the policy
        # still knows which version would have been installed.
        cand = self.depcache.get_candidate_ver(pkg)
        policy = self.depcache.policy
        return cand if cand is not None else policy.get_candidate_ver(pkg)  # type: ignore[attr-defined]  # not in the stubs

    def marked(self) -> Iterator[apt_pkg.Package]:
        """The packages marked for installation, in cache order."""
        return (pkg for pkg in self.cache.packages if self.depcache.marked_install(pkg))

    def installs(self, ver: apt_pkg.Version) -> bool:
        """Whether exactly `ver` is marked for installation."""
        cand = self.candidate(ver.parent_pkg)
        return (
            cand is not None
            and cand.id == ver.id
            and bool(self.depcache.marked_install(ver.parent_pkg))
        )


_DEPENDS = ("PreDepends", "Depends")
_FIELD_NAMES = {"PreDepends": "Pre-Depends"}
_CONFLICTS = {"Conflicts": "conflicts with", "Breaks": "breaks"}


def _lookup(cache: apt_pkg.Cache, name: str, arch: str) -> apt_pkg.Package:
    """The real package that `name` (maybe "name:arch", maybe virtual) stands for."""
    pkgname, _, pkgarch = name.partition(":")
    try:
        pkg = cache[(pkgname, pkgarch or arch)]
    except KeyError:
        raise ResolveError(
            f'package "{name}" is not available from the configured sources'
        ) from None
    if pkg.has_versions:
        return pkg
    providers = {ver.parent_pkg.name: ver.parent_pkg for _, _, ver in pkg.provides_list}
    if len(providers) == 1:
        # apt installs the only provider of a virtual package, and so do we.
        return next(iter(providers.values()))
    if providers:
        names = ", ".join(f'"{n}"' for n in sorted(providers))
        raise ResolveError(
            f'package "{name}" is virtual and provided by {names}; request one of them'
        )
    raise ResolveError(f'package "{name}" is not available from the configured sources')


def _essential_packages(
    cache: apt_pkg.Cache, depcache: apt_pkg.DepCache, arch: str
) -> list[apt_pkg.Package]:
    """The `Essential: yes` packages of `arch`, as mmdebstrap's essential variant has them."""
    return sorted(
        (
            pkg
            for pkg in cache.packages
            if pkg.essential
            and pkg.architecture == arch
            and depcache.get_candidate_ver(pkg) is not None
        ),
        key=lambda pkg: pkg.name,
    )


def _mark(req: _Request) -> None:
    import apt_pkg

    resolver = apt_pkg.ProblemResolver(req.depcache)
    with apt_pkg.ActionGroup(req.depcache):  # type: ignore[attr-defined]  # stubs lack __enter__
        # Protected before anything is marked: auto-install then chooses
        # other alternatives and never installs an excluded package.
        for pkg in req.excluded.values():
            resolver.protect(pkg)
        for pkg in [*req.essential, *req.requested]:
            req.depcache.mark_install(pkg, True, True)
            # Protected after marking: a protected package cannot change mode,
            # so a later conflicting request cannot silently unmark it.
            resolver.protect(pkg)
    # On failure the explanation is built from the dependency data instead.
    with contextlib.suppress(apt_pkg.Error):
        resolver.resolve(True)


def _why(req: _Request, pkg: apt_pkg.Package) -> str:
    """Why `pkg` is part of the tree: requested, essential or needed by another package."""
    if any(p.id == pkg.id for p in req.requested):
        return "requested"
    if any(p.id == pkg.id for p in req.essential):
        return "essential"
    for other in req.marked():
        for group in _dependency_groups(req, other):
            if other.id != pkg.id and any(
                t.parent_pkg.id == pkg.id for dep in group for t in dep.all_targets()
            ):
                return f'required by "{other.name}"'
    return "required"


def _dependency_groups(req: _Request, pkg: apt_pkg.Package) -> list[list[apt_pkg.Dependency]]:
    """The or-groups of `pkg`'s candidate that must be satisfied (Recommends never break)."""
    cand = req.candidate(pkg)
    if cand is None:
        return []
    return [group for kind in _DEPENDS for group in cand.depends_list.get(kind, [])]


def _conflict_targets(ver: apt_pkg.Version) -> Iterator[tuple[str, apt_pkg.Version]]:
    """(field, version) for every version that `ver` conflicts with or breaks."""
    for field in _CONFLICTS:
        for group in ver.depends_list.get(field, []):
            for dep in group:
                for target in dep.all_targets():
                    if target.parent_pkg.id != ver.parent_pkg.id:
                        yield field, target


def _conflict_message(
    req: _Request, pkg: apt_pkg.Package, field: str, other: apt_pkg.Package
) -> str:
    return (
        f'package "{pkg.name}" ({_why(req, pkg)}) {_CONFLICTS[field]} '
        f'"{other.name}" ({_why(req, other)})'
    )


def _conflicts_of(req: _Request, pkg: apt_pkg.Package) -> str | None:
    """A conflict, in either direction, between `pkg` and a package marked for installation."""
    cand = req.candidate(pkg)
    if cand is None:
        return None
    for field, target in _conflict_targets(cand):
        if req.installs(target):
            return _conflict_message(req, pkg, field, target.parent_pkg)
    for other in req.marked():
        other_cand = req.candidate(other)
        if other.id == pkg.id or other_cand is None:
            continue
        for field, target in _conflict_targets(other_cand):
            if target.id == cand.id:
                return _conflict_message(req, other, field, pkg)
    return None


def _describe_dep(dep: apt_pkg.Dependency) -> str:
    if dep.target_ver:
        return f"{dep.target_pkg.name} ({dep.comp_type_deb} {dep.target_ver})"
    return dep.target_pkg.name


def _unsatisfied(req: _Request, pkg: apt_pkg.Package) -> str | None:
    """A dependency of `pkg` that the marked set does not satisfy, explained."""
    for group in _dependency_groups(req, pkg):
        targets = [t for dep in group for t in dep.all_targets()]
        if any(req.installs(t) for t in targets):
            continue
        wanted = " | ".join(_describe_dep(dep) for dep in group)
        providers = sorted({t.parent_pkg.name for t in targets})
        if providers and all(name in req.excluded for name in providers):
            return (
                f'package "{providers[0]}" is excluded by exclude-packages but required by '
                f'"{pkg.name}" (Depends: {wanted})'
            )
        if not targets:
            return f'package "{pkg.name}" depends on {wanted}, which is not available'
        return f'package "{pkg.name}" depends on {wanted}, which cannot be installed'
    return None


def _explain(req: _Request) -> list[str]:
    """Why the marked set is not a valid tree, one sentence per problem."""
    problems: list[str] = []
    for pkg in [*req.requested, *req.essential]:
        if pkg.name in req.excluded:
            problems.append(
                f'package "{pkg.name}" is excluded by exclude-packages but {_why(req, pkg)}'
            )
        elif not req.depcache.marked_install(pkg):
            reason = _conflicts_of(req, pkg) or _unsatisfied(req, pkg)
            problems.append(
                reason or f'package "{pkg.name}" ({_why(req, pkg)}) cannot be installed'
            )
    for pkg in req.marked():
        if req.depcache.is_inst_broken(pkg):
            reason = _unsatisfied(req, pkg) or _conflicts_of(req, pkg)
            problems.append(reason or f'package "{pkg.name}" has unmet dependencies')
    # One root cause is often found from both of its ends.
    return list(dict.fromkeys(problems))


def resolve_marked(request: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Mark the request in a fresh DepCache; return the installed set or raise ResolveError."""
    import apt_pkg

    arch = request["arch"]
    cache = apt_pkg.Cache(None)
    depcache = apt_pkg.DepCache(cache)
    excluded = {}
    for name in request["exclude"]:
        with contextlib.suppress(KeyError):
            excluded[name] = cache[(name, arch)]
    req = _Request(
        cache=cache,
        depcache=depcache,
        requested=[_lookup(cache, name, arch) for name in request["packages"]],
        essential=_essential_packages(cache, depcache, arch) if request["essential"] else [],
        excluded=excluded,
    )
    _mark(req)
    if problems := _explain(req):
        raise ResolveError("; ".join(problems))
    installed = []
    for pkg in _needed(req, recommends=request["recommends"]):
        ver = req.candidate(pkg)
        assert ver is not None, pkg.name
        installed.append((pkg.name, ver.ver_str, ver.arch))
    return sorted(installed)


def _needed(req: _Request, *, recommends: bool) -> list[apt_pkg.Package]:
    """The marked packages reachable from the essential and requested ones.

    The problem resolver can leave behind the dependencies of an alternative it
    gave up (linux-image's `initramfs-tools | linux-initramfs-tool` with dracut
    requested leaves initramfs-tools-core); apt would autoremove them, so they
    are not part of the tree.
    """
    kinds = (*_DEPENDS, "Recommends") if recommends else _DEPENDS
    keep: dict[int, apt_pkg.Package] = {}
    stack = [*req.essential, *req.requested]
    while stack:
        pkg = stack.pop()
        if pkg.id in keep or not req.depcache.marked_install(pkg):
            continue
        keep[pkg.id] = pkg
        cand = req.candidate(pkg)
        if cand is None:
            continue
        for kind in kinds:
            for group in cand.depends_list.get(kind, []):
                target = next(
                    (t for dep in group for t in dep.all_targets() if req.installs(t)), None
                )
                if target is not None:
                    stack.append(target.parent_pkg)
    return [pkg for pkg in req.marked() if pkg.id in keep]


# --- layering on an installed base ---


@dataclass
class _Layer:
    """One layer resolution: the caches, the base, and what the request asks of it."""

    cache: apt_pkg.Cache
    depcache: apt_pkg.DepCache
    base: dict[int, apt_pkg.Package]
    removed: dict[int, apt_pkg.Package]
    requested: dict[int, apt_pkg.Package]
    chosen: dict[int, apt_pkg.Version]
    # Base packages that a local .deb replaces (override replace); also in `requested`.
    replaced: dict[int, apt_pkg.Package] = dataclasses.field(default_factory=dict)

    def candidate(self, pkg: apt_pkg.Package) -> apt_pkg.Version | None:
        """The version the layer would install of `pkg`: a local .deb's, else apt's choice."""
        if pkg.id in self.chosen:
            return self.chosen[pkg.id]
        cand = self.depcache.get_candidate_ver(pkg)
        policy = self.depcache.policy
        return cand if cand is not None else policy.get_candidate_ver(pkg)  # type: ignore[attr-defined]  # not in the stubs

    def changes(self, pkg: apt_pkg.Package) -> bool:
        """Whether `pkg` is marked to be installed, upgraded or downgraded."""
        depcache = self.depcache
        return bool(
            depcache.marked_install(pkg)
            or depcache.marked_upgrade(pkg)
            or depcache.marked_downgrade(pkg)
        )

    def in_base(self, pkg: apt_pkg.Package) -> bool:
        """Whether `pkg` is in the base commit and stays (not removed by override remove)."""
        return pkg.id in self.base and pkg.id not in self.removed

    def after(self, pkg: apt_pkg.Package) -> apt_pkg.Version | None:
        """The version of `pkg` in the layered tree, None when it is not there."""
        if self.changes(pkg):
            return self.candidate(pkg)
        if self.depcache.marked_delete(pkg) or not self.in_base(pkg):
            return None
        return pkg.current_ver

    def present(self, ver: apt_pkg.Version) -> bool:
        after = self.after(ver.parent_pkg)
        return after is not None and after.id == ver.id

    def added(self) -> Iterator[apt_pkg.Package]:
        """The packages the layer adds, in cache order."""
        return (
            pkg
            for pkg in self.cache.packages
            if self.depcache.marked_install(pkg) and pkg.id not in self.base
        )

    def why(self, pkg: apt_pkg.Package) -> str:
        if pkg.id in self.requested:
            return "requested"
        for other in self.added():
            ver = self.candidate(other)
            if (
                other.id != pkg.id
                and ver is not None
                and any(
                    t.parent_pkg.id == pkg.id
                    for kind in _DEPENDS
                    for group in ver.depends_list.get(kind, [])
                    for dep in group
                    for t in dep.all_targets()
                )
            ):
                return f'required by "{other.name}"'
        return "required"

    def describe(self, pkg: apt_pkg.Package) -> str:
        """`"name" 1.0 in the base commit` for a base package, `"name" (why)` for an added one."""
        if self.in_base(pkg) and not self.changes(pkg):
            return f'"{pkg.name}" {pkg.current_ver.ver_str} in the base commit'
        return f'"{pkg.name}" ({self.why(pkg)})'


def _groups(ver: apt_pkg.Version) -> Iterator[tuple[str, list[apt_pkg.Dependency]]]:
    for kind in _DEPENDS:
        for group in ver.depends_list.get(kind, []):
            yield kind, group


def _layer_conflict(
    layer: _Layer, pkg: apt_pkg.Package, ver: apt_pkg.Version, desc: str
) -> str | None:
    """A conflict, in either direction, between `ver` and a package of the layered tree.

    `desc` names `ver` in the message (`"name" (requested)`).
    """
    for field, target in _conflict_targets(ver):
        if layer.present(target):
            return f"package {desc} {_CONFLICTS[field]} {layer.describe(target.parent_pkg)}"
    others = [*(p for p in layer.base.values() if layer.in_base(p)), *layer.added()]
    for other in others:
        other_ver = layer.after(other)
        if other.id == pkg.id or other_ver is None:
            continue
        for field, target in _conflict_targets(other_ver):
            if target.id == ver.id:
                return f"package {layer.describe(other)} {_CONFLICTS[field]} {desc}"
    return None


def _needs_base_change(layer: _Layer, desc: str, group: list[apt_pkg.Dependency]) -> str | None:
    """When a base package's version cannot satisfy `group`: say which and why."""
    for dep in group:
        target = dep.target_pkg
        if layer.in_base(target) and target.current_ver is not None:
            wanted = f" ({dep.comp_type_deb} {dep.target_ver})" if dep.target_ver else ""
            return (
                f'package {desc} needs "{target.name}"{wanted} but the base commit has '
                f"{target.name} {target.current_ver.ver_str}; "
                "use override replace to change a base package"
            )
    return None


def _layer_unsatisfied(
    layer: _Layer, ver: apt_pkg.Version, desc: str, seen: set[int]
) -> str | None:
    """A dependency of `ver` that the layered tree cannot satisfy, explained."""
    for _, group in _groups(ver):
        targets = [t for dep in group for t in dep.all_targets()]
        if any(layer.present(t) for t in targets):
            continue
        wanted = " | ".join(_describe_dep(dep) for dep in group)
        if reason := _needs_base_change(layer, desc, group):
            return reason
        gone = sorted({t.parent_pkg.name for t in targets if t.parent_pkg.id in layer.removed})
        if gone and all(t.parent_pkg.id in layer.removed for t in targets):
            return (
                f'package {desc} needs "{gone[0]}", '
                "which override remove takes out of the base commit"
            )
        if not targets:
            return f"package {desc} depends on {wanted}, which is not available"
        # The dependency's own problem (a conflict, a base version) is the cause.
        for target in targets:
            tpkg = target.parent_pkg
            if tpkg.id in seen or layer.in_base(tpkg):
                continue
            seen.add(tpkg.id)
            inner = f'"{tpkg.name}" (required by "{ver.parent_pkg.name}")'
            reason = _layer_conflict(layer, tpkg, target, inner) or _layer_unsatisfied(
                layer, target, inner, seen
            )
            if reason:
                return reason
        return f"package {desc} depends on {wanted}, which cannot be installed"
    return None


def _explain_added(layer: _Layer, pkg: apt_pkg.Package) -> str:
    ver = layer.candidate(pkg)
    desc = f'"{pkg.name}" ({layer.why(pkg)})'
    if ver is None:
        return f"package {desc} has no installable version"
    return (
        _layer_conflict(layer, pkg, ver, desc)
        or _layer_unsatisfied(layer, ver, desc, {pkg.id})
        or f"package {desc} cannot be installed"
    )


def _explain_base_change(layer: _Layer, pkg: apt_pkg.Package) -> str:
    """Why the resolution would change base package `pkg`, which only overrides may do."""
    current = pkg.current_ver
    for other in layer.added():
        ver = layer.candidate(other)
        if ver is None:
            continue
        desc = f'"{other.name}" ({layer.why(other)})'
        for _, group in _groups(ver):
            if any(dep.target_pkg.id == pkg.id for dep in group) and not any(
                t.id == current.id for dep in group for t in dep.all_targets()
            ):
                reason = _needs_base_change(layer, desc, group)
                if reason:
                    return reason
        for field, target in _conflict_targets(ver):
            if target.id == current.id:
                return (
                    f'package {desc} {_CONFLICTS[field]} "{pkg.name}" {current.ver_str} '
                    "in the base commit"
                )
    if layer.depcache.marked_delete(pkg):
        return (
            f'the request would remove "{pkg.name}" {current.ver_str} from the base commit; '
            "use override remove to remove a base package"
        )
    new = layer.candidate(pkg)
    return (
        f'the request would change "{pkg.name}" from {current.ver_str} to '
        f"{new.ver_str if new else '?'} in the base commit; "
        "use override replace to change a base package"
    )


def _removal_dependency(layer: _Layer, pkg: apt_pkg.Package) -> tuple[str, str] | None:
    """(removed package, "Depends: ...") when `pkg` needs a package override remove takes out."""
    for kind, group in _groups(pkg.current_ver):
        targets = [t for dep in group for t in dep.all_targets()]
        if any(layer.present(t) for t in targets):
            continue
        gone = sorted({t.parent_pkg.name for t in targets if t.parent_pkg.id in layer.removed})
        if gone:
            wanted = " | ".join(_describe_dep(dep) for dep in group)
            return gone[0], f"{_FIELD_NAMES.get(kind, kind)}: {wanted}"
    return None


def _replacement_dependency(layer: _Layer, pkg: apt_pkg.Package) -> str | None:
    """Why base package `pkg` breaks when a package it needs is replaced, or None."""
    for kind, group in _groups(pkg.current_ver):
        targets = [t for dep in group for t in dep.all_targets()]
        if any(layer.present(t) for t in targets):
            continue
        for dep in group:
            target = dep.target_pkg
            if target.id in layer.replaced:
                new = layer.candidate(target)
                wanted = " | ".join(_describe_dep(d) for d in group)
                return (
                    f'package "{target.name}" {new.ver_str if new else "?"} (local) cannot '
                    f'replace {target.current_ver.ver_str} in the base commit: "{pkg.name}" '
                    f"{pkg.current_ver.ver_str} in the base commit depends on it "
                    f"({_FIELD_NAMES.get(kind, kind)}: {wanted})"
                )
    for field, conflicting in _conflict_targets(pkg.current_ver):
        if conflicting.parent_pkg.id in layer.replaced and layer.present(conflicting):
            return (
                f'package "{conflicting.parent_pkg.name}" {conflicting.ver_str} (local) cannot '
                f'replace the base commit\'s version: "{pkg.name}" {pkg.current_ver.ver_str} '
                f"in the base commit {_CONFLICTS[field]} it"
            )
    return None


def _removal_message(removed: str, dependents: list[tuple[apt_pkg.Package, str]]) -> str:
    """Why `removed` cannot be removed: the base packages that depend on it."""
    if len(dependents) == 1:
        pkg, why = dependents[0]
        return (
            f'package "{removed}" cannot be removed: "{pkg.name}" {pkg.current_ver.ver_str} '
            f"in the base commit depends on it ({why})"
        )
    named = ", ".join(f'"{pkg.name}" {pkg.current_ver.ver_str}' for pkg, _ in dependents[:3])
    more = f" and {len(dependents) - 3} more" if len(dependents) > 3 else ""
    return f'package "{removed}" cannot be removed: {named}{more} in the base commit depend on it'


def _base_package(cache: apt_pkg.Cache, name: str, arch: str) -> apt_pkg.Package:
    """The installed package that `name` (maybe "name:arch") names, for override remove."""
    pkgname, _, pkgarch = name.partition(":")
    try:
        pkg = cache[(pkgname, pkgarch or arch)]
    except KeyError:
        pkg = None
    if pkg is None or pkg.current_ver is None:
        raise ResolveError(f'package "{name}" is not in the base commit')
    if pkg.essential:
        # dpkg would refuse it halfway through the transaction.
        raise ResolveError(f'package "{name}" is essential and cannot be removed')
    return pkg


def _installed_provider(cache: apt_pkg.Cache, name: str, arch: str) -> apt_pkg.Package | None:
    """The base package that `name` is, or that provides it when it is virtual."""
    pkgname, _, pkgarch = name.partition(":")
    try:
        pkg = cache[(pkgname, pkgarch or arch)]
    except KeyError:
        return None
    if pkg.current_ver is not None:
        return pkg
    if not pkg.has_versions:
        for _, _, ver in pkg.provides_list:
            provider = ver.parent_pkg
            if provider.current_ver is not None and provider.current_ver.id == ver.id:
                return provider
    return None


def _local_version(
    cache: apt_pkg.Cache, deb: _LocalDeb, arch: str, repo: _LocalRepo
) -> tuple[apt_pkg.Package, apt_pkg.Version]:
    import apt_pkg

    prefix = apt_pkg.uri_to_filename(repo.uri)
    pkg = cache[(deb.name, arch if deb.arch == "all" else deb.arch)]
    for ver in pkg.version_list:
        if ver.ver_str == deb.version and any(
            Path(pkgfile.filename).name.startswith(prefix) for pkgfile, _ in ver.file_list
        ):
            return pkg, ver
    raise AssertionError(f"{deb.path} is missing from its local index")


def _archive(
    ver: apt_pkg.Version,
    sources: apt_pkg.SourceList,
    records: apt_pkg.PackageRecords,
    local: _LocalRepo | None,
) -> tuple[str, str]:
    """The download URI of `ver` and its sha256, from the (signed) index it is listed in."""
    import apt_pkg

    skip = apt_pkg.uri_to_filename(local.uri) if local else None
    for pkgfile, offset in ver.file_list:
        if skip and Path(pkgfile.filename).name.startswith(skip):
            continue
        index = sources.find_index(pkgfile)
        if index is None:
            # The dpkg status file.
            continue
        records.lookup((pkgfile, offset))
        uri = index.archive_uri(records.filename)
        try:
            sha256 = records.hashes.find("SHA256").hashvalue
        except (KeyError, AttributeError, apt_pkg.Error):
            sha256 = ""
        if not sha256:
            raise ResolveError(
                f'package "{ver.parent_pkg.name}" {ver.ver_str} has no SHA256 checksum '
                f"in the index of {uri}"
            )
        return uri, sha256
    raise ResolveError(
        f'package "{ver.parent_pkg.name}" {ver.ver_str} is not available from the configured '
        "sources"
    )


def _mark_layer(layer: _Layer) -> None:
    import apt_pkg

    resolver = apt_pkg.ProblemResolver(layer.depcache)
    with apt_pkg.ActionGroup(layer.depcache):  # type: ignore[attr-defined]  # stubs lack __enter__
        # Protected before anything is marked: auto-install may then add
        # packages but never upgrade, downgrade or remove a base one.
        for pkg in layer.base.values():
            if pkg.id in layer.removed:
                layer.depcache.mark_delete(pkg, False)
            resolver.protect(pkg)
        for pkg in layer.requested.values():
            if pkg.id in layer.chosen:
                layer.depcache.set_candidate_ver(pkg, layer.chosen[pkg.id])
            layer.depcache.mark_install(pkg, True, True)
            resolver.protect(pkg)
    # On failure the explanation is built from the dependency data instead.
    with contextlib.suppress(apt_pkg.Error):
        resolver.resolve(True)


def _layer_problems(layer: _Layer) -> list[str]:
    depcache = layer.depcache
    problems = []
    for pkg in layer.requested.values():
        if not layer.changes(pkg) or depcache.is_inst_broken(pkg):
            problems.append(_explain_added(layer, pkg))
    for pkg in layer.added():
        if depcache.is_inst_broken(pkg):
            problems.append(_explain_added(layer, pkg))
    # A base package broken otherwise conflicts with an added one, which said so.
    explained = bool(problems)
    # A removal can break hundreds of base packages: one sentence per removal.
    dependents: dict[str, list[tuple[apt_pkg.Package, str]]] = {}
    for pkg in sorted(layer.base.values(), key=lambda pkg: pkg.name):
        if pkg.id in layer.removed or pkg.id in layer.replaced:
            continue
        if depcache.marked_delete(pkg) or layer.changes(pkg):
            problems.append(_explain_base_change(layer, pkg))
        elif depcache.is_inst_broken(pkg) and not depcache.is_now_broken(pkg):
            if needed := _removal_dependency(layer, pkg):
                dependents.setdefault(needed[0], []).append((pkg, needed[1]))
                continue
            if reason := _replacement_dependency(layer, pkg):
                problems.append(reason)
                continue
            if explained:
                continue
            desc = f'"{pkg.name}" {pkg.current_ver.ver_str} in the base commit'
            reason = _layer_conflict(layer, pkg, pkg.current_ver, desc)
            problems.append(reason or f"package {desc} would be broken by the request")
    problems.extend(_removal_message(name, pkgs) for name, pkgs in sorted(dependents.items()))
    # One root cause is often found from both of its ends.
    return list(dict.fromkeys(problems))


def _layer_needed(layer: _Layer, *, recommends: bool) -> list[apt_pkg.Package]:
    """The added packages reachable from the requested ones (see _needed), by name."""
    kinds = (*_DEPENDS, "Recommends") if recommends else _DEPENDS
    keep: dict[int, apt_pkg.Package] = {}
    stack = list(layer.requested.values())
    while stack:
        pkg = stack.pop()
        if pkg.id in keep or not layer.changes(pkg):
            continue
        if pkg.id in layer.base and pkg.id not in layer.replaced:
            continue
        keep[pkg.id] = pkg
        ver = layer.candidate(pkg)
        if ver is None:
            continue
        for kind in kinds:
            for group in ver.depends_list.get(kind, []):
                target = next(
                    (t for dep in group for t in dep.all_targets() if layer.present(t)), None
                )
                if target is not None:
                    stack.append(target.parent_pkg)
    return sorted(keep.values(), key=lambda pkg: (pkg.name, pkg.architecture))


def _replacement_is_active(
    pkg: apt_pkg.Package, deb: _LocalDeb, removed: dict[int, apt_pkg.Package], inactive_ok: bool
) -> bool:
    """Whether local `deb` replaces base package `pkg` (override replace); errors if it cannot."""
    if pkg.current_ver is None:
        raise ResolveError(
            f'package "{deb.name}" is not in the base commit: override replace only replaces '
            "base packages; use install to layer it"
        )
    if pkg.id in removed:
        raise ResolveError(f'package "{deb.name}" is both removed from the base and replaced')
    if pkg.current_ver.ver_str == deb.version:
        if inactive_ok:
            return False
        raise ResolveError(
            f'package "{deb.name}" {deb.version} is already the version in the base commit'
        )
    return True


def resolve_layer_marked(request: dict[str, Any], local: _LocalRepo | None) -> dict[str, Any]:
    """Resolve a layer on the base in Dir::State::status; the plan, or ResolveError."""
    import apt_pkg

    arch = request["arch"]
    cache = apt_pkg.Cache(None)
    depcache = apt_pkg.DepCache(cache)
    base = {pkg.id: pkg for pkg in cache.packages if pkg.current_ver is not None}
    removed: dict[int, apt_pkg.Package] = {}
    for name in request["remove"]:
        pkg = _base_package(cache, name, arch)
        removed[pkg.id] = pkg
    requested: dict[int, apt_pkg.Package] = {}
    chosen: dict[int, apt_pkg.Version] = {}
    inactive: list[str] = []

    def already_in_base(name: str, installed: apt_pkg.Package, local_version: str | None) -> None:
        if installed.id in removed:
            raise ResolveError(f'package "{name}" is both removed from the base and requested')
        current = installed.current_ver.ver_str
        if local_version is not None and local_version != current:
            raise ResolveError(
                f'package "{name}" {local_version} (local) would replace "{installed.name}" '
                f"{current} in the base commit; use override replace to change a base package"
            )
        if name not in inactive:
            inactive.append(name)

    for name in request["install"]:
        installed = _installed_provider(cache, name, arch)
        if installed is not None:
            already_in_base(name, installed, None)
            continue
        pkg = _lookup(cache, name, arch)
        requested[pkg.id] = pkg
    replacing = set(request.get("replace_local", []))
    replaced: dict[int, apt_pkg.Package] = {}
    for deb in local.debs if local else []:
        assert local is not None
        pkg, local_ver = _local_version(cache, deb, arch, local)
        if deb.path in replacing:
            if _replacement_is_active(pkg, deb, removed, request["allow_inactive"]):
                requested[pkg.id] = pkg
                chosen[pkg.id] = local_ver
                replaced[pkg.id] = pkg
            continue
        if pkg.current_ver is not None:
            already_in_base(deb.name, pkg, deb.version)
            continue
        requested[pkg.id] = pkg
        chosen[pkg.id] = local_ver
    if inactive and not request["allow_inactive"]:
        if len(inactive) == 1:
            raise ResolveError(
                f'package "{inactive[0]}" is already in the base commit; '
                "use --allow-inactive to request it anyway"
            )
        names = ", ".join(f'"{name}"' for name in inactive)
        raise ResolveError(
            f"packages {names} are already in the base commit; "
            "use --allow-inactive to request them anyway"
        )
    layer = _Layer(cache, depcache, base, removed, requested, chosen, replaced)
    _mark_layer(layer)
    if problems := _layer_problems(layer):
        raise ResolveError("; ".join(problems))

    sources = apt_pkg.SourceList()
    sources.read_main_list()
    records = apt_pkg.PackageRecords(cache)
    by_name = {deb.name: deb for deb in local.debs} if local else {}
    install = []
    for pkg in _layer_needed(layer, recommends=request["recommends"]):
        ver = layer.candidate(pkg)
        assert ver is not None, pkg.name
        entry: dict[str, Any] = {
            "name": pkg.name,
            "version": ver.ver_str,
            "arch": ver.arch,
            "filename": cache_name(pkg.name, ver.ver_str, ver.arch),
            "requested": pkg.id in requested,
            "replaces": pkg.current_ver.ver_str if pkg.id in replaced else None,
        }
        if pkg.id in chosen:
            deb = by_name[pkg.name]
            entry |= {
                "uri": Path(deb.path).as_uri(),
                "size": deb.size,
                "sha256": deb.sha256,
                "local_path": deb.path,
            }
        else:
            uri, sha256 = _archive(ver, sources, records, local)
            entry |= {"uri": uri, "size": ver.size, "sha256": sha256, "local_path": None}
        install.append(entry)
    remove = sorted(
        PackageInfo(pkg.name, pkg.current_ver.ver_str, pkg.current_ver.arch)
        for pkg in removed.values()
    )
    return {
        "install": install,
        "remove": [dataclasses.asdict(info) for info in remove],
        "inactive": sorted(set(inactive)),
        "download_size": sum(e["size"] for e in install if e["local_path"] is None),
        "statedir": request["statedir"],
    }


# --- search ---


def search_cache(terms: Sequence[str], arch: str) -> list[tuple[str, str, str]]:
    """(name, version, summary) of the candidates whose name or description has every term.

    The index files are read directly (15 times faster than a record lookup
    per package); a stanza counts when it is its package's candidate version.
    Debian's own archive puts only the summary into its Packages files (the
    long descriptions are in Translation files, which are not fetched).
    """
    import apt_pkg

    cache = apt_pkg.Cache(None)
    depcache = apt_pkg.DepCache(cache)
    wanted = [term.casefold() for term in terms]
    found: dict[str, tuple[str, str, str]] = {}
    for pkgfile in cache.file_list:  # type: ignore[attr-defined]  # not in the stubs
        if pkgfile.index_type != "Debian Package Index":
            continue
        with apt_pkg.TagFile(pkgfile.filename) as tags:
            for section in tags:
                name, description = section["Package"], section.get("Description", "")
                text = f"{name}\n{description}".casefold()
                if not all(term in text for term in wanted):
                    continue
                pkg_arch = section.get("Architecture", arch)
                try:
                    pkg = cache[(name, arch if pkg_arch == "all" else pkg_arch)]
                except KeyError:
                    continue
                cand = depcache.get_candidate_ver(pkg)
                if cand is not None and cand.ver_str == section.get("Version"):
                    found[name] = (name, cand.ver_str, description.partition("\n")[0])
    return sorted(found.values())


def _drop_lists(statedir: Path) -> None:
    lists = statedir / "state" / "lists"
    for path in lists.iterdir():
        if path.is_file():
            path.unlink()
    for path in (statedir / "cache").glob("*.bin"):
        path.unlink()


# --- the child's main ---


def _run_op(request: dict[str, Any], out: IO[str]) -> dict[str, Any]:
    import apt_pkg

    op = request["op"]
    statedir = Path(request["statedir"])
    if op == "tree":
        fetch_indexes(request["stanzas"], out)
        return {"packages": resolve_marked(request)}
    if op == "layer":
        local_debs = [*request["local_debs"], *request.get("replace_local", [])]
        local = _local_repo(statedir, local_debs, request["arch"])
        update_lists(request["stanzas"], out, refresh=request["refresh"], local=local)
        return {"plan": resolve_layer_marked(request, local)}
    if op == "search":
        update_lists(request["stanzas"], out, refresh=False)
        return {"results": search_cache(request["terms"], request["arch"])}
    if op == "refresh":
        if request["force"]:
            _drop_lists(statedir)
        fetch_indexes(request["stanzas"], out)
        return {"refreshed": True}
    raise apt_pkg.Error(f"unknown request {op!r}")


def _child_main() -> int:
    # The protocol gets its own copy of stdout; fd 1 then points to stderr so
    # that whatever libapt-pkg prints cannot corrupt the JSON stream.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    request = json.load(sys.stdin)
    request.setdefault("op", "tree")
    reply: dict[str, Any]
    if request["op"] == "fetch":
        from apt_ostree.debian.fetch import download

        try:
            reply = download(request, out)
        except FetchError as e:
            reply = {"error": type(e).__name__, "message": str(e)}
    else:
        with _locked(Path(request["statedir"])):
            conf = _prepare_statedir(request)
            # libapt-pkg reads APT_CONFIG first, and our file moves Dir::Etc::parts
            # away from the host's /etc/apt/apt.conf.d before that is read.
            os.environ["APT_CONFIG"] = str(conf)
            import apt_pkg

            apt_pkg.init_config()
            recommends = request.get("recommends", False)
            apt_pkg.config.set("APT::Install-Recommends", "true" if recommends else "false")
            if "status" in request:
                # The base commit's dpkg database: what is installed.
                apt_pkg.config.set("Dir::State::status", request["status"])
            apt_pkg.init_system()
            try:
                reply = _run_op(request, out)
            except (ResolveError, SourceError) as e:
                reply = {"error": type(e).__name__, "message": str(e)}
    out.write(json.dumps(reply) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
