"""`compose tree`: treefile in, bootable OSTree commit out.

Order: validate everything (treefile, repo, sources) -> resolve with libapt-pkg
-> no-op check against the ref's commit -> mmdebstrap -> customizations ->
layout conversion -> commit. Nothing is written to the repository before the
commit step, which is one transaction.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from apt_ostree.compose import accounts
from apt_ostree.compose.bootstrap import BootstrapRequest, bootstrap
from apt_ostree.compose.commit import CommitRequest, CommitResult, commit_tree
from apt_ostree.compose.customize import customize_tree
from apt_ostree.compose.lockfile import load_lockfiles, lockfile_json, write_lockfile
from apt_ostree.compose.postprocess import PostprocessOptions, postprocess_tree
from apt_ostree.compose.reproducible import tree_epoch
from apt_ostree.compose.treefile import Treefile
from apt_ostree.debian.localrepo import (
    check_local_versions,
    make_local_repository,
    read_debs,
)
from apt_ostree.debian.packages import PackageInfo
from apt_ostree.debian.resolve import index_digests, resolve_tree
from apt_ostree.debian.sources import host_sources, sources_for_suite, write_sources_file
from apt_ostree.errors import AptOstreeError, LockfileError, RepoError
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.ostree.signing import GpgSigner, check_signer
from apt_ostree.reporter import Reporter

INPUTS_KEY = "apt-ostree.inputs-sha256"
RESOLVED_KEY = "apt-ostree.resolved-sha256"
TREEFILE_KEY = "apt-ostree.treefile-sha256"
DEFAULT_CACHEDIR = Path("/var/cache/apt-ostree/compose")
# Raised when the same inputs make a different tree (a change of the layout
# conversion): a commit that an older apt-ostree made is then no no-op.
COMPOSE_FORMAT = 3


@dataclass
class ComposeOptions:
    repo: Path
    cachedir: Path | None = None
    workdir: Path | None = None
    dry_run: bool = False
    force_nocache: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    write_commitid_to: Path | None = None
    signer: GpgSigner | None = None
    # rpm-ostree's --ex-lockfile (in order), --ex-lockfile-strict, --ex-write-lockfile-to.
    lockfiles: list[Path] = field(default_factory=list)
    lockfile_strict: bool = False
    write_lockfile_to: Path | None = None


@dataclass
class ComposeResult:
    packages: list[PackageInfo]
    commit: CommitResult | None = None  # None: dry run or no changes

    @property
    def changed(self) -> bool:
        return self.commit is not None


def host_architecture() -> str:
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


def packages_sha256(packages: Sequence[PackageInfo]) -> str:
    data = json.dumps([[p.name, p.version, p.arch] for p in sorted(packages)])
    return hashlib.sha256(data.encode()).hexdigest()


def compose_inputs_sha256(treefile: Treefile) -> str:
    """The treefile's inputs and the compose format: what decides the tree."""
    data = f"apt-ostree compose format {COMPOSE_FORMAT}\0{treefile.inputs_sha256()}"
    return hashlib.sha256(data.encode()).hexdigest()


def _suite_of(treefile: Treefile, stanzas: list[str]) -> str:
    if treefile.suite:
        return treefile.suite
    for stanza in stanzas:
        for line in stanza.splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "suites" and value.split():
                return value.split()[0]
    raise AptOstreeError("cannot tell the suite: set `suite` in the treefile")


@contextmanager
def _workdir(base: Path | None) -> Iterator[Path]:
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="apt-ostree-compose-", dir=base or "/var/tmp"))
    try:
        yield path
    finally:
        # Deployment-style immutable bits are never set here; a plain rmtree is enough.
        shutil.rmtree(path, ignore_errors=True)


def _previous_commit(repo_path: Path, ref: str) -> ostree_repo.CommitInfo | None:
    if not ostree_repo.is_repo(repo_path):
        return None
    repo = ostree_repo.open_repo(repo_path)
    checksum = ostree_repo.resolve_ref(repo, ref)
    return ostree_repo.read_commit(repo, checksum) if checksum else None


def _previous_accounts(
    repo_path: Path, previous: ostree_repo.CommitInfo | None, treefile: Treefile
) -> accounts.Accounts | None:
    if previous is None or "previous" not in (treefile.check_passwd, treefile.check_groups):
        return None
    return accounts.previous_accounts(ostree_repo.open_repo(repo_path), previous.checksum)


def treefile_sources(treefile: Treefile) -> list[str]:
    """The APT sources a treefile composes from: its own, else the host's mirrors
    for the release it names (that release's pockets too), else the host's."""
    if treefile.sources is not None:
        return treefile.sources
    if treefile.suite:
        return sources_for_suite(host_sources(), treefile.suite)
    return host_sources()


def compose_tree(treefile: Treefile, options: ComposeOptions, reporter: Reporter) -> ComposeResult:
    ostree_repo.check_repo_path(options.repo)
    reason = ostree_repo.validate_ref(treefile.ref)
    if reason is not None:
        raise RepoError(f'invalid ref "{treefile.ref}": {reason}')
    if options.signer is not None and not options.dry_run:
        check_signer(options.signer)
    cachedir = options.cachedir or DEFAULT_CACHEDIR
    stanzas = treefile_sources(treefile)
    arch = treefile.architecture or host_architecture()
    suite = _suite_of(treefile, stanzas)
    if options.lockfile_strict and not options.lockfiles:
        raise LockfileError("--ex-lockfile-strict needs --ex-lockfile")
    lock = load_lockfiles(options.lockfiles)
    # SOURCE_DATE_EPOCH: the treefile's, else the lockfile's, else (later) the
    # newest date of the installed packages' files (docs/compose.md).
    fixed_epoch = (
        treefile.source_date_epoch
        if treefile.source_date_epoch is not None
        else lock.source_date_epoch
    )
    requested = list(treefile.packages)
    local_debs = read_debs(treefile.local_packages, arch)
    if local_debs:
        local = make_local_repository(local_debs, cachedir / "local-packages")
        stanzas = [*stanzas, local.stanza]
        requested += [deb.name for deb in local_debs if deb.name not in requested]

    reporter.task_begin("Resolving packages")
    packages = resolve_tree(
        stanzas,
        requested,
        arch=arch,
        statedir=cachedir / "apt",
        exclude=treefile.exclude_packages,
        recommends=treefile.recommends,
        locked=list(lock.packages.values()),
        lock_strict=options.lockfile_strict,
        reporter=reporter,
    )
    check_local_versions(local_debs, packages)
    reporter.task_end(f"{len(packages)} packages")
    if options.write_lockfile_to is not None:
        digests = index_digests(stanzas, packages, arch=arch, statedir=cachedir / "apt")
        write_lockfile(options.write_lockfile_to, lockfile_json(packages, digests))
    result = ComposeResult(packages)
    if options.dry_run:
        return result

    inputs = compose_inputs_sha256(treefile)
    resolved = packages_sha256(packages)
    previous = _previous_commit(options.repo, treefile.ref)
    if (
        previous is not None
        and not options.force_nocache
        and previous.metadata.get(INPUTS_KEY) == inputs
        and previous.metadata.get(RESOLVED_KEY) == resolved
        and all(previous.metadata.get(k) == v for k, v in options.metadata.items())
    ):
        return result

    previous_accounts = _previous_accounts(options.repo, previous, treefile)
    with _workdir(options.workdir) as work:
        sources_file = work / "apt-ostree.sources"
        write_sources_file(stanzas, sources_file)
        rootfs = work / "rootfs"
        seed = None
        if previous_accounts is not None:
            seed = accounts.write_seed(previous_accounts, work / "accounts")
        bootstrap(
            BootstrapRequest(
                suite=suite,
                arch=arch,
                sources_file=sources_file,
                packages=packages,
                requested=requested,
                recommends=treefile.recommends,
                documentation=treefile.documentation,
                cachedir=cachedir / "debs",
                accounts_seed=seed,
                source_date_epoch=fixed_epoch,
            ),
            rootfs,
            reporter,
        )
        epoch = fixed_epoch if fixed_epoch is not None else tree_epoch(rootfs)
        customize_tree(rootfs, treefile, reporter, epoch)
        reporter.task_begin("Converting to the OSTree layout")
        post = postprocess_tree(
            rootfs,
            PostprocessOptions(
                machineid_compat=treefile.machineid_compat,
                tmp_is_dir=treefile.tmp_is_dir,
                initramfs_args=treefile.initramfs_args,
                source_date_epoch=epoch,
            ),
            reporter,
        )
        reporter.task_end(f"{post.tmpfiles_lines} tmpfiles.d lines for /var")
        if previous_accounts is not None:
            accounts.check_stable_ids(
                previous_accounts, rootfs,
                check_passwd=treefile.check_passwd, check_groups=treefile.check_groups,
            )  # fmt: skip

        metadata: dict[str, object] = dict(treefile.metadata)
        metadata.update(options.metadata)
        metadata[INPUTS_KEY] = inputs
        metadata[RESOLVED_KEY] = resolved
        metadata[TREEFILE_KEY] = treefile.treefile_sha256()
        version = metadata.pop("version", None)
        reporter.task_begin(f"Committing to {options.repo} ({treefile.ref})")
        commit = commit_tree(
            CommitRequest(
                repo=options.repo,
                ref=treefile.ref,
                rootfs=rootfs,
                metadata=metadata,
                version=str(version) if version is not None else None,
                automatic_version_prefix=treefile.automatic_version_prefix,
                signer=options.signer,
            )
        )
        reporter.task_end(commit.checksum)
    result.commit = commit
    return result
