"""Resolve the package set of a fresh tree with libapt-pkg, against given APT sources.

libapt-pkg's configuration is process-global and is read from the host's
/etc/apt on initialisation, so the work runs in a child process
(`python -m apt_ostree.debian.resolve`) that points `APT_CONFIG` at a file in
the caller's state directory before apt_pkg is initialised. The parent sends
one JSON request on the child's stdin; the child answers with JSON lines on
its stdout: `{"progress": ...}` while fetching, then one `{"packages": ...}` or
`{"error": ..., "message": ...}`. Anything on the child's stderr is a bug's
traceback and is shown as such.

The state directory persists between calls: index files are fetched with
If-Modified-Since and the binary package cache is reused while the sources
are unchanged, so a second resolve against the same sources is fast.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from apt_ostree.errors import ResolveError, SourceError

if TYPE_CHECKING:
    from apt_ostree.reporter import Reporter

_CHILD_MODULE = "apt_ostree.debian.resolve"
_ERRORS: dict[str, type[ResolveError | SourceError]] = {
    "ResolveError": ResolveError,
    "SourceError": SourceError,
}


@dataclass(frozen=True, order=True)
class PackageInfo:
    """One package of a tree, as dpkg names it (arch is "all" for arch-independent ones)."""

    name: str
    version: str
    arch: str


class ResolverCrash(RuntimeError):
    """The resolver process died without an answer: a bug, shown with its traceback."""


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
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", arch):
        raise ResolveError(f'invalid architecture "{arch}"')
    request = {
        "stanzas": list(stanzas),
        "packages": list(packages),
        "arch": arch,
        "statedir": str(Path(statedir).absolute()),
        "exclude": list(exclude),
        "recommends": recommends,
        "essential": essential,
    }
    reply = _call_child(request, reporter)
    if "error" in reply:
        raise _ERRORS[reply["error"]](reply["message"])
    return [PackageInfo(*entry) for entry in reply["packages"]]


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


def _apt_conf(statedir: Path, arch: str, recommends: bool) -> str:
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
        "APT::Install-Recommends": "true" if recommends else "false",
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
    _write_if_changed(conf, _apt_conf(statedir, request["arch"], request["recommends"]))
    sources = "\n".join(stanza.strip("\n") + "\n" for stanza in request["stanzas"])
    _write_if_changed(statedir / "etc" / "sources.list.d" / "apt-ostree.sources", sources)
    return conf


@contextlib.contextmanager
def _locked(statedir: Path) -> Iterator[None]:
    """Hold the state directory: two resolutions must not write into it at once."""
    statedir.mkdir(parents=True, exist_ok=True)
    with (statedir / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


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
        return f"{dep.target_pkg.name} ({dep.comp_type} {dep.target_ver})"
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


def _child_main() -> int:
    # The protocol gets its own copy of stdout; fd 1 then points to stderr so
    # that whatever libapt-pkg prints cannot corrupt the JSON stream.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    request = json.load(sys.stdin)
    with _locked(Path(request["statedir"])):
        conf = _prepare_statedir(request)
        # libapt-pkg reads APT_CONFIG first, and our file moves Dir::Etc::parts
        # away from the host's /etc/apt/apt.conf.d before that is read.
        os.environ["APT_CONFIG"] = str(conf)
        import apt_pkg

        apt_pkg.init_config()
        apt_pkg.init_system()
        try:
            fetch_indexes(request["stanzas"], out)
            reply: dict[str, Any] = {"packages": resolve_marked(request)}
        except (ResolveError, SourceError) as e:
            reply = {"error": type(e).__name__, "message": str(e)}
    out.write(json.dumps(reply) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
