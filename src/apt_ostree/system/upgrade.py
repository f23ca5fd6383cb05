"""Moving a sysroot to another base commit: upgrade, deploy REVISION, rebase.

Each takes the origin of the default deployment (the pending one when there is
one, as rpm-ostree does, so that changes accumulate), pulls from the origin's
remote, and deploys the new commit with `system.sysroot.deploy`: staged on a
booted system, written at once offline, the previous default kept as rollback.
The callers hold the sysroot lock; a failed pull or deploy leaves the
deployments as they were.

A package change (`--install=`/`--uninstall=`) is applied to the origin first
and the layer is built on the new base in the same transaction; when the base
does not change, the change alone makes the new deployment (as `install`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from apt_ostree.errors import AptOstreeError
from apt_ostree.oci.ostreeref import is_image_reference, parse_image_reference
from apt_ostree.ostree import GLib, OSTree
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.ostree.repo import CommitInfo
from apt_ostree.ostree.sysroot import DeploymentInfo
from apt_ostree.reporter import Reporter
from apt_ostree.system.bootfailures import failures_of_base
from apt_ostree.system.db import PackageDiff, diff_commit_infos
from apt_ostree.system.origin import Origin, parse_refspec
from apt_ostree.system.pull import DowngradeError, PullError, PullResult, pull, remote_url
from apt_ostree.system.sysroot import Sysroot, deploy

if TYPE_CHECKING:
    from apt_ostree.system.packages import PackageChange

PACKAGES_KEY = "apt-ostree.packages"
BASE_KEY = "apt-ostree.base-checksum"

DISALLOWED = " (--disallow-downgrade)"
_CHECKSUM = re.compile(r"[0-9a-f]{64}")
_PREFIX = re.compile(r"[0-9a-f]{4,63}")


class RevisionError(AptOstreeError):
    pass


@dataclass(frozen=True)
class Fetch:
    """How the new commit and packages are fetched (rpm-ostree's -C and --download-only).

    `cache_only`: nothing from the network: the commit must already be whole in the
    repository and the packages in the cache. `download_only`: fetch everything the
    deployment needs, deploy nothing."""

    cache_only: bool = False
    download_only: bool = False


NETWORK = Fetch()


# -- the state we start from ---------------------------------------------------


@dataclass
class Current:
    """The default deployment of an OS and the base commit it was made from."""

    deployment: DeploymentInfo
    origin: Origin
    base: CommitInfo


def current_state(sysroot: Sysroot, osname: str) -> Current:
    for d in sysroot.deployments():
        if d.osname == osname:
            origin = Origin.from_dict(d.origin)
            commit = ostree_repo.read_commit(sysroot.repo, d.checksum)
            base = commit.metadata.get(BASE_KEY)
            if base:
                commit = ostree_repo.read_commit(sysroot.repo, base)
            return Current(d, origin, commit)
    raise AptOstreeError(f'the sysroot at {sysroot.path} has no deployment of "{osname}"')


def _changed_request(sysroot: Sysroot, origin: Origin, change: PackageChange | None) -> Origin:
    """`origin` with the package change applied (or unchanged without one)."""
    if change is None:
        return origin
    from apt_ostree.system.packages import apply_change

    return apply_change(sysroot, origin, change)


def _same_request(a: Origin, b: Origin) -> bool:
    """Whether two origins ask for the same packages and overrides."""
    return dataclasses.replace(a, override_commit=None) == dataclasses.replace(
        b, override_commit=None
    )


@dataclass
class Outcome:
    """What an upgrade, deploy or rebase did (or, with `changed` False, found)."""

    changed: bool
    osname: str
    refspec: str
    old: CommitInfo
    new: CommitInfo
    diff: PackageDiff
    pulled: PullResult
    staged: bool = False
    deployed: bool = True  # False: --download-only fetched it, nothing was deployed


def version_of(info: CommitInfo) -> str | None:
    version = info.metadata.get("version")
    return str(version) if version else None


def _ref_tip(sysroot: Sysroot, origin_remote: str | None, ref: str) -> str:
    name = f"{origin_remote}:{ref}" if origin_remote else ref
    checksum = ostree_repo.resolve_ref(sysroot.repo, name)
    if checksum is None:
        raise RevisionError(f'ref "{name}" is not in the sysroot\'s repository')
    return checksum


def _check_not_older(
    current: CommitInfo, new: CommitInfo, hint: str = "; use --allow-downgrade to deploy it anyway"
) -> None:
    if new.timestamp < current.timestamp:
        raise DowngradeError(
            f"the new commit {new.checksum} is older than the deployed commit"
            f" {current.checksum}{hint}"
        )


def _require_whole(sysroot: Sysroot, checksum: str) -> None:
    """With --cache-only the commit's tree must be in the repository, not only its
    metadata (as `upgrade --check` leaves it)."""
    try:
        ok, _, state = sysroot.repo.load_commit(checksum)
    except GLib.Error:
        ok, state = False, 0
    if not ok or state & OSTree.RepoCommitState.PARTIAL:
        raise RevisionError(
            f"commit {checksum} is not wholly in the sysroot's repository;"
            " run again without -C/--cache-only to fetch it"
        )


def _deploy(
    sysroot: Sysroot,
    osname: str,
    current: Current,
    new: CommitInfo,
    origin: Origin,
    pulled: PullResult,
    reporter: Reporter,
    fetch: Fetch = NETWORK,
) -> Outcome:
    diff = diff_commit_infos(current.base, new)
    version = version_of(new)
    label = f"{new.checksum[:12]}" + (f" (version {version})" if version else "")
    for failure in failures_of_base(sysroot.path, osname, new.checksum):
        reporter.message(
            f"warning: a deployment of {label} failed to boot at {failure['time']} and was"
            f" rolled back ({failure['reason'].splitlines()[0]}); it boots on probation again"
        )
    checksum = new.checksum
    if origin.layered:
        # Layered packages and overrides are applied again on the new base.
        from apt_ostree.system.layering import build_layer
        from apt_ostree.system.packages import local_paths, replacement_paths

        assert current.deployment.path is not None
        layer = build_layer(
            sysroot, osname, new.checksum, origin,
            merge_etc=current.deployment.path / "etc",
            local_debs=local_paths(sysroot, origin),
            replace_debs=replacement_paths(sysroot, origin),
            allow_inactive=True,
            download_only=fetch.download_only,
            cache_only=fetch.cache_only,
            reporter=reporter,
        )  # fmt: skip
        if not fetch.download_only:
            assert layer.checksum is not None
            checksum = layer.checksum
    if fetch.download_only:
        return Outcome(True, osname, origin.refspec, current.base, new, diff, pulled,
                       deployed=False)  # fmt: skip
    reporter.task_begin(f"{'Staging' if sysroot.booted else 'Deploying'} {label}")
    deploy(sysroot, osname, checksum, origin, kargs=current.deployment.kargs)
    reporter.task_end()
    return Outcome(True, osname, origin.refspec, current.base, new, diff, pulled, sysroot.booted)


def _unchanged(osname: str, current: Current, pulled: PullResult) -> Outcome:
    return Outcome(
        False, osname, current.origin.refspec, current.base, current.base, PackageDiff(), pulled
    )


# -- upgrade -------------------------------------------------------------------


def _pull_tip(
    sysroot: Sysroot,
    origin: Origin,
    reporter: Reporter,
    *,
    commit_only: bool = False,
    timestamp_from: str | None = None,
    fetch: Fetch = NETWORK,
) -> tuple[CommitInfo, PullResult]:
    if origin.image is not None:
        from apt_ostree.system.image import pull_image

        commit, _info, image_pulled = pull_image(sysroot.repo, origin.image, reporter)
        return commit, image_pulled
    pulled = PullResult()
    if origin.remote is not None and not fetch.cache_only:
        what = "commit metadata of " if commit_only else ""
        reporter.task_begin(f"Pulling {what}{origin.refspec}")
        pulled = pull(
            sysroot.repo,
            origin.remote,
            [origin.ref],
            reporter=reporter,
            commit_only=commit_only,
            timestamp_from=timestamp_from,
        )
        reporter.task_end(pulled.describe())
    tip = _ref_tip(sysroot, origin.remote, origin.ref)
    if fetch.cache_only and not commit_only:
        _require_whole(sysroot, tip)
    return ostree_repo.read_commit(sysroot.repo, tip), pulled


def check_update(
    sysroot: Sysroot, osname: str, *, allow_downgrade: bool, reporter: Reporter
) -> Outcome:
    """Is there a newer commit on the origin's ref? Only commit objects are fetched."""
    current = current_state(sysroot, osname)
    if current.origin.image is not None:
        return _check_image_update(osname, current, reporter)
    timestamp_from = None if allow_downgrade else current.base.checksum
    new, pulled = _pull_tip(
        sysroot, current.origin, reporter, commit_only=True, timestamp_from=timestamp_from
    )
    if new.checksum == current.base.checksum:
        return _unchanged(osname, current, pulled)
    if not allow_downgrade:
        _check_not_older(current.base, new)
    diff = diff_commit_infos(current.base, new)
    return Outcome(True, osname, current.origin.refspec, current.base, new, diff, pulled)


def _check_image_update(osname: str, current: Current, reporter: Reporter) -> Outcome:
    """Compare the image's manifest digest with the deployed one; no layer is fetched."""
    from apt_ostree.system.image import image_created, inspect_image, manifest_digest

    assert current.origin.image is not None
    reporter.task_begin(f"Fetching the manifest of {current.origin.image}")
    info = inspect_image(current.origin.image)
    reporter.task_end(info.digest)
    if info.digest == manifest_digest(current.base):
        return _unchanged(osname, current, PullResult())
    metadata: dict[str, object] = {"ostree.manifest-digest": info.digest}
    if info.version:
        metadata["version"] = info.version
    commit = info.labels.get("ostree.commit") or info.digest
    new = CommitInfo(commit, None, "", image_created(info), metadata)
    # The package list is in the layers, which a check does not fetch: no diff.
    return Outcome(
        True, osname, current.origin.refspec, current.base, new, PackageDiff(), PullResult()
    )


def upgrade(
    sysroot: Sysroot,
    osname: str,
    *,
    allow_downgrade: bool,
    reporter: Reporter,
    change: PackageChange | None = None,
    fetch: Fetch = NETWORK,
) -> Outcome:
    """Pull the origin's ref and deploy its tip; clears a `deploy REVISION` override.
    `change` (--install/--uninstall) is applied in the same transaction."""
    current = current_state(sysroot, osname)
    requested = _changed_request(sysroot, current.origin, change)
    timestamp_from = None if allow_downgrade else current.base.checksum
    new, pulled = _pull_tip(
        sysroot, current.origin, reporter, timestamp_from=timestamp_from, fetch=fetch
    )
    if new.checksum == current.base.checksum:
        if _same_request(requested, current.origin):
            return _unchanged(osname, current, pulled)
        # No new base: the package change alone, on the deployed base.
        origin = dataclasses.replace(requested, override_commit=current.origin.override_commit)
        return _deploy(sysroot, osname, current, current.base, origin, pulled, reporter, fetch)
    # An image's tag is what its publisher says it is: no timestamp comparison.
    if not allow_downgrade and current.origin.image is None:
        _check_not_older(current.base, new)
    origin = dataclasses.replace(requested, override_commit=None)
    return _deploy(sysroot, osname, current, new, origin, pulled, reporter, fetch)


# -- deploy REVISION -----------------------------------------------------------


def _history(sysroot: Sysroot, tip: str) -> list[CommitInfo]:
    """The ref's commits from its tip back through every parent held locally."""
    out: list[CommitInfo] = []
    checksum: str | None = tip
    while checksum is not None and ostree_repo.commit_exists(sysroot.repo, checksum):
        info = ostree_repo.read_commit(sysroot.repo, checksum)
        out.append(info)
        checksum = info.parent
    return out


def _resolve_local_prefix(sysroot: Sysroot, prefix: str) -> str | None:
    try:
        ok, checksum = sysroot.repo.resolve_rev(prefix, True)
    except GLib.Error as e:
        raise RevisionError(f'revision "{prefix}": {e.message}') from e
    return str(checksum) if ok and checksum and _CHECKSUM.fullmatch(checksum) else None


def parse_revision(revision: str) -> tuple[str, str]:
    """`version=V` -> ("version", V); a checksum or `revision=CSUM` -> ("checksum", CSUM);
    a shorter hex string -> ("prefix", P). Anything else is refused before any pull."""
    kind, sep, value = revision.partition("=")
    if sep and kind == "version" and value:
        return "version", value
    wanted = (value if sep and kind == "revision" else revision).lower()
    if not (sep and kind != "revision"):
        if _CHECKSUM.fullmatch(wanted):
            return "checksum", wanted
        if _PREFIX.fullmatch(wanted):
            return "prefix", wanted
    raise RevisionError(
        f'invalid revision "{revision}": expected a checksum (or a prefix of at least 4'
        " characters), version=VERSION or revision=CHECKSUM"
    )


def _find_in_history(
    sysroot: Sysroot,
    history: list[CommitInfo],
    refspec: str,
    kind: str,
    value: str,
    skip_branch_check: bool,
) -> str:
    if kind == "version":
        for info in history:
            if version_of(info) == value:
                return info.checksum
        raise RevisionError(f'version "{value}" is not in the history of {refspec}')
    in_history = [i.checksum for i in history if i.checksum.startswith(value)]
    if len(in_history) > 1:
        raise RevisionError(f'revision "{value}" is ambiguous in the history of {refspec}')
    if in_history:
        return in_history[0]
    checksum = value if kind == "checksum" else None
    if checksum is None and skip_branch_check:
        checksum = _resolve_local_prefix(sysroot, value)
    if checksum is None:
        raise RevisionError(
            f'revision "{value}" is not in the history of {refspec}'
            " (give the full checksum of a commit from elsewhere)"
        )
    if not skip_branch_check:
        raise RevisionError(
            f"commit {checksum} is not in the history of {refspec};"
            " use --skip-branch-check to deploy it anyway"
        )
    return checksum


def resolve_revision(
    sysroot: Sysroot,
    refspec: str,
    revision: str,
    *,
    reporter: Reporter,
    skip_branch_check: bool = False,
    fetch: Fetch = NETWORK,
) -> tuple[str, PullResult]:
    """A commit checksum for `revision` (checksum, unique prefix, `version=V`,
    `revision=CSUM`) of `refspec`, after fetching the ref's history (commit
    objects only). A commit that is not in that history is refused unless
    `skip_branch_check`."""
    kind, value = parse_revision(revision)
    remote, ref = parse_refspec(refspec)
    pulled = PullResult()
    if remote is not None and not fetch.cache_only:
        reporter.task_begin(f"Pulling the history of {refspec}")
        pulled = pull(sysroot.repo, remote, [ref], reporter=reporter, commit_only=True, depth=-1)
        reporter.task_end(pulled.describe())
    history = _history(sysroot, _ref_tip(sysroot, remote, ref))
    checksum = _find_in_history(sysroot, history, refspec, kind, value, skip_branch_check)
    return checksum, pulled


def _pull_commit(
    sysroot: Sysroot, remote: str | None, checksum: str, reporter: Reporter, fetch: Fetch
) -> PullResult:
    """Fetch the whole tree of one commit, by checksum: no ref is moved."""
    if remote is None or fetch.cache_only:
        if not ostree_repo.commit_exists(sysroot.repo, checksum):
            raise RevisionError(f"commit {checksum} is not in the sysroot's repository")
        _require_whole(sysroot, checksum)
        return PullResult()
    reporter.task_begin(f"Pulling {checksum[:12]} from {remote}")
    pulled = pull(sysroot.repo, remote, [checksum], reporter=reporter)
    reporter.task_end(pulled.describe())
    return pulled


def _add(a: PullResult, b: PullResult) -> PullResult:
    return PullResult(
        a.bytes_transferred + b.bytes_transferred,
        a.objects_fetched + b.objects_fetched,
        a.delta_parts_fetched + b.delta_parts_fetched,
    )


def deploy_revision(
    sysroot: Sysroot,
    osname: str,
    revision: str,
    *,
    skip_branch_check: bool,
    reporter: Reporter,
    change: PackageChange | None = None,
    fetch: Fetch = NETWORK,
    disallow_downgrade: bool = False,
    preview: bool = False,
) -> Outcome:
    """Deploy a given commit of the origin's ref; the origin records it as
    `override-commit` until the next `upgrade`. `change` (--install/--uninstall)
    is applied in the same transaction."""
    current = current_state(sysroot, osname)
    if current.origin.image is not None:
        raise RevisionError(
            f"deploy REVISION needs an ostree ref; {current.origin.refspec} is an image:"
            " rebase to another tag or @sha256: digest instead"
        )
    requested = _changed_request(sysroot, current.origin, change)
    refspec = current.origin.refspec
    checksum, history = resolve_revision(
        sysroot, refspec, revision, reporter=reporter, skip_branch_check=skip_branch_check,
        fetch=fetch,
    )  # fmt: skip
    if preview:  # the commit object is enough to diff the package lists
        new = ostree_repo.read_commit(sysroot.repo, checksum)
        if disallow_downgrade:
            _check_not_older(current.base, new, DISALLOWED)
        changed = checksum != current.base.checksum
        return Outcome(changed, osname, refspec, current.base, new,
                       diff_commit_infos(current.base, new), history, deployed=False)  # fmt: skip
    pulled = _add(history, _pull_commit(sysroot, current.origin.remote, checksum, reporter, fetch))
    if checksum == current.base.checksum and _same_request(requested, current.origin):
        return _unchanged(osname, current, pulled)
    new = ostree_repo.read_commit(sysroot.repo, checksum)
    if disallow_downgrade:
        _check_not_older(current.base, new, DISALLOWED)
    origin = dataclasses.replace(requested, override_commit=checksum)
    return _deploy(sysroot, osname, current, new, origin, pulled, reporter, fetch)


# -- rebase --------------------------------------------------------------------


def rebase_target(
    origin: Origin, refspec: str | None, branch: str | None, remote: str | None
) -> str:
    """The new refspec: `remote:ref` or `ref` (on the current remote), or the
    current one with its ref (`-b`) or remote (`-m`) replaced."""
    if refspec is not None and branch is not None:
        raise AptOstreeError("give either REFSPEC or --branch, not both")
    if refspec is None and branch is None and remote is None:
        raise AptOstreeError("rebase needs a REFSPEC, --branch or --remote")
    if refspec is not None and is_image_reference(refspec):
        if remote is not None:
            raise AptOstreeError("--remote does not apply to an image reference")
        return str(parse_image_reference(refspec))
    if origin.image is not None and refspec is None:
        raise AptOstreeError(f"{origin.refspec} is an image: give the REFSPEC to rebase to")
    new_remote, new_ref = origin.remote, origin.ref
    if refspec is not None:
        parsed_remote, new_ref = parse_refspec(refspec)
        if parsed_remote is not None:
            new_remote = parsed_remote
    if branch is not None:
        new_ref = branch
    if remote is not None:
        new_remote = remote
    reason = ostree_repo.validate_ref(new_ref)
    if reason is not None:
        raise AptOstreeError(f'invalid ref "{new_ref}": {reason}')
    return f"{new_remote}:{new_ref}" if new_remote else new_ref


def rebase(
    sysroot: Sysroot,
    osname: str,
    refspec: str,
    revision: str | None,
    *,
    skip_purge: bool,
    reporter: Reporter,
    change: PackageChange | None = None,
    fetch: Fetch = NETWORK,
    disallow_downgrade: bool = False,
    custom_origin: tuple[str, str] | None = None,
) -> Outcome:
    """Switch the origin to `refspec` (from `rebase_target`) and deploy its tip
    or `revision`. An older commit is allowed: a rebase is a deliberate move.
    `change` (--install/--uninstall) is applied in the same transaction."""
    current = current_state(sysroot, osname)
    old = current.origin
    requested = _changed_request(sysroot, old, change)
    if refspec == old.refspec and revision is None:
        raise AptOstreeError(f"old and new refs are equal: {refspec}")
    if is_image_reference(refspec) and revision is not None:
        raise RevisionError("a rebase to an image takes no REVISION: name a tag or @sha256: digest")
    remote = None if is_image_reference(refspec) else parse_refspec(refspec)[0]
    if remote is not None:
        remote_url(sysroot.repo, remote)  # a one-line error for an unknown remote
    target = dataclasses.replace(
        requested, refspec=refspec, override_commit=None, custom_origin=custom_origin
    )
    if revision is not None:
        checksum, history = resolve_revision(
            sysroot, refspec, revision, reporter=reporter, fetch=fetch
        )
        pulled = _add(history, _pull_commit(sysroot, remote, checksum, reporter, fetch))
        new = ostree_repo.read_commit(sysroot.repo, checksum)
        target.override_commit = checksum
    else:
        new, pulled = _pull_tip(sysroot, target, reporter, fetch=fetch)
    if disallow_downgrade:
        _check_not_older(current.base, new, DISALLOWED)
    outcome = _deploy(sysroot, osname, current, new, target, pulled, reporter, fetch)
    if fetch.download_only:
        return outcome
    if not skip_purge and old.remote is not None and old.refspec != refspec:
        # A remote ref is only a cache of the remote's state; rollback deployments
        # keep their commits through their own refs. Local refs are the user's.
        try:
            sysroot.repo.set_ref_immediate(old.remote, old.ref, None, None)
        except GLib.Error as e:
            reporter.message(f"warning: cannot remove the old ref {old.refspec}: {e.message}")
    return outcome


__all__ = [
    "Fetch",
    "Outcome",
    "PullError",
    "RevisionError",
    "check_update",
    "deploy_revision",
    "rebase",
    "rebase_target",
    "resolve_revision",
    "upgrade",
]
