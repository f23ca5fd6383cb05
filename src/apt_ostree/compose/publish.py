"""`compose publish`: make an archive repository ready to be served as it is.

Static deltas from the ref's previous commit(s) to its tip, their index, then
the summary (and its signature) last, so that a client that sees the new
summary finds every delta it names. Any static HTTP server or CDN serving the
repository directory is then the update server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from apt_ostree.errors import RepoError
from apt_ostree.ostree import GLib, OSTree
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.ostree.signing import GpgSigner, check_signer, regenerate_summary
from apt_ostree.reporter import Reporter


@dataclass
class PublishRequest:
    repo: Path
    refs: list[str]
    delta_depth: int = 1  # deltas from this many previous commits of each ref
    from_scratch: bool = False  # also a delta from nothing, for first installs
    min_fallback_size: int = 4  # MB; larger new files are fetched as plain objects
    signer: GpgSigner | None = None


@dataclass
class PublishResult:
    generated: list[str] = field(default_factory=list)  # "FROM-TO" (FROM empty: from scratch)
    existing: list[str] = field(default_factory=list)
    signed: bool = False


def _check(req: PublishRequest) -> OSTree.Repo:
    if not ostree_repo.is_repo(req.repo):
        raise RepoError(f"{req.repo} is not an OSTree repository")
    if req.delta_depth < 0:
        raise RepoError(f"--delta-depth {req.delta_depth}: expected 0 or more")
    if req.min_fallback_size < 0:
        raise RepoError(f"--min-fallback-size {req.min_fallback_size}: expected 0 or more")
    repo = ostree_repo.open_repo(req.repo)
    mode = repo.get_mode()
    if mode != OSTree.RepoMode.ARCHIVE:
        raise RepoError(
            f"{req.repo} is not an archive repository: a bare repository cannot be served over HTTP"
        )
    for ref in req.refs:
        if ostree_repo.resolve_ref(repo, ref) is None:
            raise RepoError(f'ref "{ref}" is not in {req.repo}')
    if req.signer is not None:
        check_signer(req.signer)
    return repo


def _delta_sources(repo: OSTree.Repo, tip: str, depth: int) -> list[str]:
    """The tip's ancestors, nearest first, up to `depth` of them (as far as the repo has them)."""
    sources: list[str] = []
    current = tip
    while len(sources) < depth:
        parent = ostree_repo.read_commit(repo, current).parent
        if parent is None or not ostree_repo.commit_exists(repo, parent):
            break
        sources.append(parent)
        current = parent
    return sources


def _generate(repo: OSTree.Repo, source: str | None, tip: str, min_fallback_size: int) -> None:
    params = GLib.Variant("a{sv}", {"min-fallback-size": GLib.Variant("u", min_fallback_size)})
    try:
        repo.static_delta_generate(
            OSTree.StaticDeltaGenerateOpt.MAJOR, source, tip, None, params, None
        )
    except GLib.Error as e:
        what = f"{source[:12]}-{tip[:12]}" if source else f"scratch-{tip[:12]}"
        raise RepoError(f"cannot generate the static delta {what}: {e.message}") from e


def publish(req: PublishRequest, reporter: Reporter) -> PublishResult:
    repo = _check(req)
    result = PublishResult()
    existing = set(repo.list_static_delta_names(None)[1] or [])
    for ref in req.refs:
        tip = ostree_repo.resolve_ref(repo, ref)
        assert tip is not None
        sources: list[str | None] = list(_delta_sources(repo, tip, req.delta_depth))
        if req.from_scratch:
            sources.append(None)
        for source in sources:
            name = f"{source}-{tip}" if source else tip
            if name in existing:
                result.existing.append(name)
                continue
            label = f"{source[:12]}" if source else "scratch"
            reporter.task_begin(f"Generating static delta {label} -> {tip[:12]} ({ref})")
            _generate(repo, source, tip, req.min_fallback_size)
            reporter.task_end()
            result.generated.append(name)
            existing.add(name)
        try:
            # Clients that do not find a delta in the summary look in delta-indexes/.
            repo.static_delta_reindex(OSTree.StaticDeltaIndexFlags.STATIC_DELTA_INDEX_FLAGS_NONE,
                                      tip, None)  # fmt: skip
        except GLib.Error as e:
            raise RepoError(f"cannot index the static deltas to {tip}: {e.message}") from e
    reporter.task_begin("Updating the summary" + (" and signing it" if req.signer else ""))
    regenerate_summary(repo, req.signer)
    reporter.task_end()
    result.signed = req.signer is not None
    return result
