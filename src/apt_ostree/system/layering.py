"""Package layering: a layered commit = the base commit + what dpkg did on top.

Building it costs what the packages cost, not what the base costs:
- the base tree is the lower layer of an overlay: an existing deployment of the
  base commit, or a cached hardlink checkout of it (never written: overlayfs
  copies a file up before any in-place write, so no repo object is touched);
- real dpkg runs in the overlay under bubblewrap (debian/dpkg.py);
- only the overlay's upper layer is written into a MutableTree loaded from the
  base commit (ostree/repo.commit_layer): the base is neither copied nor re-hashed.

Users created by maintainer scripts become sysusers.d lines; /var content
becomes tmpfiles.d lines; /opt content moves to /usr/lib/opt; a layer that
changes kernel modules or dracut regenerates the initramfs.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apt_ostree.debian.dpkg import DpkgRoot, check_deb, install_debs
from apt_ostree.debian.dpkgdb import installed_packages
from apt_ostree.debian.resolve import (
    LayerPlan,
    PackageInfo,
    PlannedPackage,
    fetch_packages,
    resolve_layer,
)
from apt_ostree.debian.sources import host_sources
from apt_ostree.errors import AptOstreeError
from apt_ostree.layout import (
    DPKG_DB,
    build_initramfs,
    convert_var,
    remove_path,
    write_tmpfiles,
)
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.reporter import NullReporter, Reporter
from apt_ostree.system.origin import Origin
from apt_ostree.system.sysroot import Sysroot

BASE_KEY = "apt-ostree.base-checksum"
PACKAGES_KEY = "apt-ostree.packages"
REPLACED_KEY = "apt-ostree.replaced-base-packages"
USER_FILES = ("passwd", "group", "shadow", "gshadow")
SYSUSERS_CONF = "usr/lib/sysusers.d/apt-ostree-layer.conf"


class LayeringError(AptOstreeError):
    pass


@dataclass
class LayerResult:
    plan: LayerPlan
    checksum: str | None = None  # None: dry run or download only
    packages: list[PackageInfo] = field(default_factory=list)
    new_users: list[str] = field(default_factory=list)
    regenerated_initramfs: bool = False


def base_of(sysroot: Sysroot, checksum: str) -> str:
    """The base commit of a deployment's commit (itself when not layered)."""
    meta = ostree_repo.read_commit(sysroot.repo, checksum).metadata
    return str(meta.get(BASE_KEY) or checksum)


def state_dir(sysroot: Sysroot, osname: str) -> Path:
    """Where layering keeps APT lists and downloaded .debs: the stateroot's
    /var/cache/apt-ostree (`cleanup -m` empties it)."""
    return sysroot.path / "ostree/deploy" / osname / "var/cache/apt-ostree"


def local_store(sysroot: Sysroot) -> Path:
    """Where .deb files given on the command line are kept, by sha256, so that
    every later rebuild of the layer (upgrade, ...) can install them again."""
    return sysroot.path / "ostree/apt-ostree/local-debs"


def _deployment_dir(sysroot: Sysroot, checksum: str) -> Path | None:
    for d in sysroot.deployments():
        if d.checksum == checksum and d.path is not None and (d.path / "usr").is_dir():
            return d.path
    return None


@contextmanager
def _base_tree(sysroot: Sysroot, base: str) -> Iterator[Path]:
    """A read-only tree of the base commit: a deployment of it, or a hardlink checkout."""
    existing = _deployment_dir(sysroot, base)
    if existing is not None:
        yield existing
        return
    tmp = sysroot.path / "ostree/repo/tmp"
    checkout = Path(tempfile.mkdtemp(prefix="apt-ostree-base-", dir=tmp))
    try:
        ostree_repo.checkout_hardlinked(sysroot.repo, base, checkout / "tree")
        yield checkout / "tree"
    finally:
        shutil.rmtree(checkout, ignore_errors=True)


@contextmanager
def _overlay(lower: Path, work: Path) -> Iterator[Path]:
    upper, workdir, merged = work / "upper", work / "work", work / "merged"
    for d in (upper, workdir, merged):
        d.mkdir()
    subprocess.run(
        ["mount", "-t", "overlay", "apt-ostree-layer", "-o",
         f"lowerdir={lower},upperdir={upper},workdir={workdir}", str(merged)],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=False, capture_output=True)


def _read_users(etc: Path, name: str) -> dict[str, str]:
    path = etc / name
    if not path.exists():
        return {}
    return {line.split(":", 1)[0]: line for line in path.read_text().splitlines() if ":" in line}


def _sysusers_lines(
    before: dict[str, str], after: dict[str, str], groups: dict[str, str]
) -> list[str]:
    """sysusers.d lines for the users that the transaction created, with the ids they got."""
    lines = []
    gid_names = {line.split(":")[2]: name for name, line in groups.items()}
    for name, entry in after.items():
        if name in before:
            continue
        fields = entry.split(":")
        uid, gid, gecos, home, shell = fields[2], fields[3], fields[4], fields[5], fields[6]
        group = gid_names.get(gid, gid)
        ident = f"{uid}:{group}" if group != name else uid
        gecos = gecos.replace('"', "") or "-"
        lines.append(f'u {name} {ident} "{gecos}" {home or "-"} {shell or "-"}')
    return lines


def _group_lines(before: dict[str, str], after: dict[str, str], users: dict[str, str]) -> list[str]:
    """sysusers.d lines for groups created without a user of the same name."""
    return [
        f"g {name} {entry.split(':')[2]}"
        for name, entry in after.items()
        if name not in before and name not in users
    ]


def _relocate_opt(root: Path, var: Path) -> list[str]:
    """/opt/NAME (which is /var/opt/NAME) moves to /usr/lib/opt/NAME with a link."""
    lines = []
    opt = var / "opt"
    if opt.is_dir():
        for entry in sorted(opt.iterdir()):
            dest = root / "usr/lib/opt" / entry.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(entry, dest)
            lines.append(f"L /var/opt/{entry.name} - - - - /usr/lib/opt/{entry.name}")
    return lines


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _collect_upper(upper: Path, lower: Path) -> list[str]:
    """Make `upper` committable: only /usr is kept (the rest are mount points that
    bubblewrap created, or /etc and /var which were bound elsewhere), overlayfs'
    whiteouts are returned as removals and its xattrs stripped."""
    for entry in upper.iterdir():
        if entry.name != "usr":
            remove_path(entry)
    # The machine's users were copied in for the scripts; the commit keeps the
    # base's files (new users travel as sysusers.d lines).
    for name in (*USER_FILES, *(f"{n}-" for n in USER_FILES), ".pwd.lock"):
        path = upper / "usr/etc" / name
        if path.exists() or path.is_symlink():
            path.unlink()
    removals = []
    for dirpath, dirnames, filenames in os.walk(upper):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(upper))
            if _is_whiteout(st):
                removals.append(rel)
                path.unlink()
                continue
            try:
                xattrs = os.listxattr(path, follow_symlinks=False)
            except OSError:
                xattrs = []
            for attr in xattrs:
                if attr.startswith("trusted.overlay."):
                    if attr == "trusted.overlay.opaque" and (lower / rel).is_dir():
                        # The directory replaces the base's: drop the base's first.
                        removals.append(rel)
                    os.removexattr(path, attr, follow_symlinks=False)
    return sorted(removals)


def _check_removals(removals: list[str], allowed: set[str]) -> None:
    """A layer may only delete base files that dpkg removed on purpose."""
    unexpected = [r for r in removals if "/" + r not in allowed]
    unexpected = [r for r in unexpected if not r.startswith(f"{DPKG_DB}/")]
    if unexpected:
        shown = ", ".join("/" + r for r in unexpected[:5])
        more = f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""
        raise LayeringError(f"the transaction deleted files of the base commit: {shown}{more}")


_USR_ALIASES = ("/etc/", "/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/")


def _base_files_of(lower: Path, packages: list[str]) -> set[str]:
    """Every path that dpkg lists for `packages` in the base (they may be removed)."""
    paths: set[str] = set()
    for name in packages:
        for lst in (lower / DPKG_DB / "info").glob(f"{name}.list"):
            paths.update(line.strip() for line in lst.read_text().splitlines() if line.strip())
        for lst in (lower / DPKG_DB / "info").glob(f"{name}:*.list"):
            paths.update(line.strip() for line in lst.read_text().splitlines() if line.strip())
    # /etc/... files are /usr/etc/... in the commit, and merged-/usr makes
    # /bin/x (as bookworm's packages still list many files) /usr/bin/x.
    return paths | {"/usr" + p for p in paths if p.startswith(_USR_ALIASES)}


def _needs_initramfs(upper: Path) -> bool:
    return any(
        (upper / p).exists()
        for p in ("usr/lib/modules", "usr/lib/dracut", "usr/etc/dracut.conf.d", "usr/lib/firmware")
    )


def build_layer(
    sysroot: Sysroot,
    osname: str,
    base: str,
    origin: Origin,
    *,
    merge_etc: Path,
    local_debs: list[Path],
    replace_debs: list[Path] | None = None,
    allow_inactive: bool = False,
    dry_run: bool = False,
    download_only: bool = False,
    cache_only: bool = False,
    reporter: Reporter | None = None,
) -> LayerResult:
    """Resolve, fetch and install the origin's request on `base`; commit the layer.

    `local_debs` are the origin's local packages (`requested-local`),
    `replace_debs` its replacements of base packages (`replace-local`).

    The caller holds the sysroot lock and deploys the returned commit.
    """
    reporter = reporter or NullReporter()
    cache = state_dir(sysroot, osname)
    with _base_tree(sysroot, base) as lower:
        stanzas = host_sources(merge_etc.parent)
        reporter.task_begin("Resolving packages")
        plan = resolve_layer(
            stanzas,
            status_file=lower / DPKG_DB / "status",
            arch=dpkg_arch(lower),
            statedir=cache / "apt",
            install=origin.requested_packages,
            remove=origin.removed_base,
            local_debs=local_debs,
            replace_local=replace_debs or [],
            allow_inactive=allow_inactive,
            # -C: neither package lists nor packages are downloaded (as rpm-ostree's -C).
            refresh=not cache_only,
            cachedir=cache / "debs",
            reporter=reporter,
        )
        replacing = sum(1 for p in plan.install if p.replaces is not None)
        reporter.task_end(
            f"{len(plan.install) - replacing} to install, {len(plan.remove)} to remove"
            + (f", {replacing} to replace" if replacing else "")
        )
        result = LayerResult(plan)
        if dry_run:
            return result
        reporter.task_begin("Downloading packages")
        debs = fetch_packages(plan, cachedir=cache / "debs", cache_only=cache_only,
                              reporter=reporter)  # fmt: skip
        reporter.task_end(f"{len(debs)} packages")
        if download_only:
            return result
        for deb in debs:
            check_deb(deb)
        work = Path(
            tempfile.mkdtemp(prefix="apt-ostree-layer-", dir=sysroot.path / "ostree/repo/tmp")
        )
        try:
            _install_layer(
                sysroot, base, lower, work, debs, plan, origin, merge_etc, result, reporter
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return result


def dpkg_arch(tree: Path) -> str:
    arch_file = tree / DPKG_DB / "arch-native"
    if arch_file.exists():
        return arch_file.read_text().strip()
    proc = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True)
    return proc.stdout.strip()


def _install_layer(
    sysroot: Sysroot,
    base: str,
    lower: Path,
    work: Path,
    debs: list[Path],
    plan: LayerPlan,
    origin: Origin,
    merge_etc: Path,
    result: LayerResult,
    reporter: Reporter,
) -> None:
    debdir = work / "debs"
    debdir.mkdir()
    linked = []
    for deb in debs:
        dest = debdir / deb.name
        try:
            os.link(deb, dest)
        except OSError:
            shutil.copy2(deb, dest)
        linked.append(dest)
    var = work / "var"
    var.mkdir()
    with _overlay(lower, work) as merged:
        etc = merged / "usr/etc"
        # Users and groups as the machine has them, so that ids stay stable.
        for name in USER_FILES:
            if (merge_etc / name).exists():
                shutil.copy2(merge_etc / name, etc / name)
        users_before = _read_users(etc, "passwd")
        groups_before = _read_users(etc, "group")
        tree = DpkgRoot(merged, var)
        tree.prepare()
        removed = [p.name for p in plan.remove]
        reporter.task_begin(f"Installing {len(debs)} packages with dpkg")
        output = install_debs(tree, linked, removed)
        reporter.task_end()
        if output.strip():
            reporter.info(output.rstrip())
        users_after = _read_users(etc, "passwd")
        groups_after = _read_users(etc, "group")
        sysusers = _sysusers_lines(users_before, users_after, groups_after)
        sysusers += _group_lines(groups_before, groups_after, users_after)
        if sysusers:
            conf = merged / SYSUSERS_CONF
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text(
                "# Users created while layering packages.\n" + "\n".join(sysusers) + "\n"
            )
            result.new_users = [line.split()[1] for line in sysusers]
        _check_var_toplevels(var)
        links = _relocate_opt(merged, var)
        if links:
            write_tmpfiles(merged, "apt-ostree-layer-opt.conf", links)
        convert_var(merged, var, conf="apt-ostree-layer-var.conf")
        if _needs_initramfs(work / "upper"):
            for kdir in sorted((merged / "usr/lib/modules").glob("*/vmlinuz")):
                reporter.task_begin(f"Regenerating the initramfs for {kdir.parent.name}")
                build_initramfs(merged, kdir.parent.name, [])
                reporter.task_end()
                result.regenerated_initramfs = True
        result.packages = installed_packages(merged)
    removals = _collect_upper(work / "upper", lower)
    replaced = [p for p in plan.install if p.replaces is not None]
    # A new version of a replaced package may drop some of its files.
    _check_removals(removals, _base_files_of(lower, removed + [p.name for p in replaced]))
    base_names = {p.name for p in installed_packages(lower)}
    layered = sorted(p.name for p in plan.install if p.requested and p.replaces is None)
    metadata: dict[str, Any] = {
        BASE_KEY: base,
        "apt-ostree.clientlayer": True,
        PACKAGES_KEY: _packages_variant(result.packages),
        "apt-ostree.layered-packages": layered,
        "apt-ostree.removed-base-packages": sorted(n for n in removed if n in base_names),
        # (name, version in the base, version that replaces it)
        REPLACED_KEY: _replacements_variant(replaced),
    }
    base_info = ostree_repo.read_commit(sysroot.repo, base)
    for key in ("version", "ostree.bootable", "ostree.linux"):
        if key in base_info.metadata:
            metadata[key] = base_info.metadata[key]
    reporter.task_begin("Committing the layer")
    result.checksum = ostree_repo.commit_layer(
        sysroot.repo, base, work / "upper", removals,
        subject=f"apt-ostree layer on {base[:12]}: {' '.join(layered)}", metadata=metadata,
    )  # fmt: skip
    reporter.task_end(result.checksum)


def _replacements_variant(replaced: list[PlannedPackage]) -> Any:
    from apt_ostree.ostree import GLib

    return GLib.Variant("a(sss)", [(p.name, p.replaces or "", p.version) for p in replaced])


def _packages_variant(packages: list[PackageInfo]) -> Any:
    from apt_ostree.ostree import GLib

    return GLib.Variant("a(sss)", [(p.name, p.version, p.arch) for p in packages])


def _check_var_toplevels(var: Path) -> None:
    local = var / "usrlocal"
    if local.is_dir() and any(local.iterdir()):
        raise LayeringError(
            "a package wrote to /usr/local, which is /var/usrlocal on an OSTree system;"
            " it cannot be layered"
        )
