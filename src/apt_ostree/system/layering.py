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

from apt_ostree import machine_secrets
from apt_ostree.debian.dpkg import DpkgRoot, check_deb, install_debs
from apt_ostree.debian.dpkgdb import installed_packages
from apt_ostree.debian.packages import LayerPlan, PackageInfo, PlannedPackage
from apt_ostree.debian.resolve import fetch_packages, resolve_layer
from apt_ostree.debian.sources import host_sources
from apt_ostree.errors import AptOstreeError
from apt_ostree.layout import (
    DPKG_DB,
    build_initramfs,
    convert_var,
    write_tmpfiles,
)
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.reporter import NullReporter, Reporter
from apt_ostree.system import kernels
from apt_ostree.system.origin import Origin
from apt_ostree.system.sysroot import Sysroot
from apt_ostree.treefs import Tree, TreeError

BASE_KEY = "apt-ostree.base-checksum"
PACKAGES_KEY = "apt-ostree.packages"
REPLACED_KEY = "apt-ostree.replaced-base-packages"
REMOTE_REPLACED_KEY = "apt-ostree.replaced-base-remote-packages"
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
    kernel: str | None = None  # a layered kernel (system/kernels.py): the one booted
    unbootable: list[str] = field(default_factory=list)  # older kernels' files removed


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
def base_tree(sysroot: Sysroot, base: str) -> Iterator[Path]:
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
def overlay(lower: Path, work: Path) -> Iterator[Path]:
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
    """The entries of the tree's /usr/etc/`name` (`etc`), read inside the tree: a
    script may have made the file a link to anything, the host's files included."""
    with Tree(etc.parent.parent) as tree:
        text = tree.read_text(f"usr/etc/{name}") or ""
    return {line.split(":", 1)[0]: line for line in text.splitlines() if ":" in line}


def _give_accounts(merge_etc: Path, merged: Path) -> None:
    """The machine's users and groups for the maintainer scripts, so that ids stay
    stable, and nothing secret: passwd and group as the merge deployment has them
    (else as the base has them), shadow and gshadow made from them with every
    account locked and no hash. None of the four enters the commit (_collect_upper)."""
    with Tree(merge_etc) as machine, Tree(merged) as tree:
        passwd = machine.read_text("passwd") or tree.read_text("usr/etc/passwd") or ""
        group = machine.read_text("group") or tree.read_text("usr/etc/group") or ""
        tree.write_text("usr/etc/passwd", passwd)
        tree.write_text("usr/etc/group", group)
        tree.write_text("usr/etc/shadow", shadow_without_hashes(passwd), 0o640)
        tree.write_text("usr/etc/gshadow", gshadow_without_hashes(group), 0o640)


def shadow_without_hashes(passwd: str) -> str:
    """A shadow file for `passwd`: `!*` (locked, no password), no aging."""
    names = [line.split(":", 1)[0] for line in passwd.splitlines() if ":" in line]
    return "".join(f"{name}:!*:::::::\n" for name in names)


def gshadow_without_hashes(group: str) -> str:
    """A gshadow file for `group`: no password, no administrators, the same members."""
    lines = []
    for line in group.splitlines():
        fields = line.split(":")
        if len(fields) >= 4:
            lines.append(f"{fields[0]}:!::{fields[3]}\n")
    return "".join(lines)


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


def _relocate_opt(tree: Tree, var: Tree) -> list[str]:
    """/opt/NAME (which is /var/opt/NAME) moves to /usr/lib/opt/NAME with a link.

    A /var/opt that a script replaced by a symlink is not followed: convert_var
    records the link as an `L` line. A symlink at /usr/lib/opt is refused."""
    lines = []
    names = var.listdir("opt", strict=True) if var.is_dir("opt") else []
    if names:
        tree.makedirs("usr/lib/opt")
    for name in names:
        tree.move_from(var, f"opt/{name}", f"usr/lib/opt/{name}")
        lines.append(f"L /var/opt/{name} - - - - /usr/lib/opt/{name}")
    return lines


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _collect_upper(upper: Path, lower: Path) -> list[str]:
    """Make `upper` committable: only /usr is kept (the rest are mount points that
    bubblewrap created, or /etc and /var which were bound elsewhere), overlayfs'
    whiteouts are returned as removals and its xattrs stripped."""
    with Tree(upper) as up, Tree(lower) as base:
        for name in up.listdir():
            if name != "usr":
                up.remove(name)
        # The machine's users were copied in for the scripts; the commit keeps the
        # base's files (new users travel as sysusers.d lines).
        for name in (*USER_FILES, *(f"{n}-" for n in USER_FILES), ".pwd.lock"):
            if up.exists(f"usr/etc/{name}"):
                up.remove(f"usr/etc/{name}")
        return _strip_overlay(up, base)


def _strip_overlay(up: Tree, base: Tree) -> list[str]:
    removals = []
    for dirpath, dirnames, filenames, dirfd in up.walk():
        for name in dirnames + filenames:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            rel = os.path.normpath(f"{dirpath}/{name}")
            if _is_whiteout(st):
                removals.append(rel)
                os.unlink(name, dir_fd=dirfd)
                continue
            # The xattr calls take no dir_fd; the fd's /proc entry names that directory.
            path = f"/proc/self/fd/{dirfd}/{name}"
            try:
                xattrs = os.listxattr(path, follow_symlinks=False)
            except OSError:
                xattrs = []
            for attr in xattrs:
                if attr.startswith("trusted.overlay."):
                    if attr == "trusted.overlay.opaque" and _is_base_dir(base, rel):
                        # The directory replaces the base's: drop the base's first.
                        removals.append(rel)
                    os.removexattr(path, attr, follow_symlinks=False)
    return sorted(removals)


def _is_base_dir(base: Tree, rel: str) -> bool:
    st = base.stat(rel)
    return st is not None and stat.S_ISDIR(st.st_mode)


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
    info = f"{DPKG_DB}/info"
    with Tree(lower) as base:
        lists = base.listdir(info)
        for name in packages:
            for lst in lists:
                if lst == f"{name}.list" or (lst.startswith(f"{name}:") and lst.endswith(".list")):
                    text = base.read_text(f"{info}/{lst}") or ""
                    paths.update(line.strip() for line in text.splitlines() if line.strip())
    # /etc/... files are /usr/etc/... in the commit, and merged-/usr makes
    # /bin/x (as bookworm's packages still list many files) /usr/bin/x.
    return paths | {"/usr" + p for p in paths if p.startswith(_USR_ALIASES)}


def _needs_initramfs(upper: Path) -> bool:
    with Tree(upper) as up:
        return any(
            up.exists(p)
            for p in (
                "usr/lib/modules", "usr/lib/dracut", "usr/etc/dracut.conf.d", "usr/lib/firmware"
            )
        )  # fmt: skip


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
    `replace_debs` its replacements of base packages (`replace-local`); the
    replacements from the APT sources (`replace`) are in `origin`.

    The caller holds the sysroot lock and deploys the returned commit.
    """
    reporter = reporter or NullReporter()
    cache = state_dir(sysroot, osname)
    with base_tree(sysroot, base) as lower:
        stanzas = host_sources(merge_etc.parent)
        reporter.task_begin("Resolving packages")
        plan = resolve_layer(
            stanzas,
            status_file=_base_status(lower),
            arch=dpkg_arch(lower),
            statedir=cache / "apt",
            install=origin.requested_packages,
            remove=origin.removed_base,
            local_debs=local_debs,
            replace_local=replace_debs or [],
            replace=origin.replaced_remote,
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
        for pkg, deb in zip(plan.install, debs, strict=True):
            check_deb(deb, label=deb_filename(pkg))
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


def _base_status(lower: Path) -> Path:
    """The base's dpkg status file, for libapt-pkg (which takes a path): the base is
    what an image made, and a link on the way would make apt read a host file."""
    try:
        with Tree(lower) as base:
            return base.host_path(f"{DPKG_DB}/status")
    except TreeError as e:
        raise LayeringError(f"cannot layer packages on this base commit: {e}") from e


def dpkg_arch(tree: Path) -> str:
    with Tree(tree) as t:
        arch = t.read_text(f"{DPKG_DB}/arch-native")
    if arch is not None:
        return arch.strip()
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
    with overlay(lower, work) as merged:
        etc = merged / "usr/etc"
        _give_accounts(merge_etc, merged)
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
            result.new_users = [line.split()[1] for line in sysusers]
        try:
            _finish_tree(merged, var, work / "upper", sysusers, result, reporter)
        except TreeError as e:
            raise _refusal(e, work / "upper", plan) from e
    try:
        removals = _collect_upper(work / "upper", lower)
    except TreeError as e:
        raise _refusal(e, work / "upper", plan) from e
    replaced = [p for p in plan.install if p.replaces is not None]
    # A new version of a replaced package may drop some of its files.
    allowed = _base_files_of(lower, removed + [p.name for p in replaced])
    # The older kernels of the tree are not bootable in it (system/kernels.py).
    allowed |= {f"/{p}" for p in result.unbootable}
    _check_removals(removals, allowed)
    base_names = {p.name for p in installed_packages(lower)}
    layered = sorted(p.name for p in plan.install if p.requested and p.replaces is None)
    metadata: dict[str, Any] = {
        BASE_KEY: base,
        "apt-ostree.clientlayer": True,
        PACKAGES_KEY: _packages_variant(result.packages),
        "apt-ostree.layered-packages": layered,
        "apt-ostree.removed-base-packages": sorted(n for n in removed if n in base_names),
        # (name, version in the base, version that replaces it)
        REPLACED_KEY: _replacements_variant([p for p in replaced if p.local_path is not None]),
        REMOTE_REPLACED_KEY: _replacements_variant([p for p in replaced if p.local_path is None]),
    }
    base_info = ostree_repo.read_commit(sysroot.repo, base)
    for key in ("version", "ostree.bootable", "ostree.linux"):
        if key in base_info.metadata:
            metadata[key] = base_info.metadata[key]
    if result.kernel is not None:
        metadata["ostree.linux"] = result.kernel
    reporter.task_begin("Committing the layer")
    result.checksum = ostree_repo.commit_layer(
        sysroot.repo, base, work / "upper", removals,
        subject=f"apt-ostree layer on {base[:12]}: {' '.join(layered)}", metadata=metadata,
    )  # fmt: skip
    reporter.task_end(result.checksum)


def _finish_tree(
    merged: Path,
    scratch_var: Path,
    upper: Path,
    sysusers: list[str],
    result: LayerResult,
    reporter: Reporter,
) -> None:
    """What apt-ostree does to the new tree after dpkg, as root outside the sandbox.

    dpkg and the maintainer scripts made both the tree and its scratch /var: every
    path resolves inside them (treefs), and a symlink where apt-ostree writes
    (sysusers.d, tmpfiles.d, /usr/lib/opt, the factory, the initramfs) is refused.
    """
    with Tree(merged) as tree, Tree(scratch_var, shown_as="/var") as var:
        if sysusers:
            tree.makedirs(os.path.dirname(SYSUSERS_CONF))
            tree.write_text(
                SYSUSERS_CONF,
                "# Users created while layering packages.\n" + "\n".join(sysusers) + "\n",
            )
        _strip_machine_secrets(tree, upper, reporter)
        _check_var_toplevels(var)
        links = _relocate_opt(tree, var)
        if links:
            write_tmpfiles(tree, "apt-ostree-layer-opt.conf", links)
        convert_var(tree, var, conf="apt-ostree-layer-var.conf")
        if kernels.install_boot_files(tree):
            result.kernel, older, result.unbootable = kernels.keep_newest(tree)
            if older:
                reporter.message(
                    f"Booting kernel {result.kernel}, the newest of {', '.join(older)} and it"
                )
        if _needs_initramfs(upper):
            for kver in tree.listdir("usr/lib/modules", strict=True):
                moddir = f"usr/lib/modules/{kver}"
                if tree.stat(f"{moddir}/vmlinuz") is None:
                    continue
                # dracut writes it inside the sandbox; a link there is a package's doing.
                if tree.is_link(f"{moddir}/initramfs.img"):
                    raise TreeError(f"/{moddir}/initramfs.img", "is a symbolic link")
                reporter.task_begin(f"Regenerating the initramfs for {kver}")
                build_initramfs(merged, kver, [])
                reporter.task_end()
                result.regenerated_initramfs = True
    result.packages = installed_packages(merged)


def _strip_machine_secrets(tree: Tree, upper: Path, reporter: Reporter) -> None:
    """Host keys and the like that the scripts generated stay out of the commit; the
    machine makes its own at boot (machine_secrets.py, docs/security.md)."""
    with Tree(upper) as up:
        if not up.is_dir("usr/etc"):
            return
        new = [
            "/etc/" + os.path.normpath(os.path.join(dirpath, name))
            for dirpath, dirnames, filenames, _ in up.walk("usr/etc")
            for name in dirnames + filenames
        ]
    secrets = machine_secrets.strip_machine_secrets(
        tree, "usr/etc", machine_secrets.owned_paths(tree, DPKG_DB), new,
        conf="apt-ostree-layer.conf",
    )  # fmt: skip
    machine_secrets.report(secrets, reporter)


def deb_filename(pkg: PlannedPackage) -> str:
    """The package's .deb file name as Debian names it (and as a user's file usually is);
    local .debs are stored under their sha256, which means nothing to the user."""
    return f"{pkg.name}_{pkg.version.split(':', 1)[-1]}_{pkg.arch}.deb"


def _owners(upper: Path, path: str) -> set[str]:
    """The packages whose dpkg file list in the new tree names `path` (or its /etc,
    /opt alias as dpkg knows it)."""
    aliases = {path}
    for stored, as_listed in (("/usr/etc/", "/etc/"), ("/var/opt/", "/opt/")):
        if (path + "/").startswith(stored):
            aliases.add((as_listed + path[len(stored) :]).rstrip("/"))
    info = f"{DPKG_DB}/info"
    owners = set()
    with Tree(upper) as up:
        for name in up.listdir(info):
            if name.endswith(".list"):
                listed = set((up.read_text(f"{info}/{name}") or "").splitlines())
                if aliases & listed:
                    owners.add(name.removesuffix(".list").split(":", 1)[0])
    return owners


def _refusal(e: TreeError, upper: Path, plan: LayerPlan) -> LayeringError:
    """The one-line refusal of a layer whose tree has a link where apt-ostree writes:
    it names the package that ships the link, else every package of the transaction
    (a maintainer script made it)."""
    owners = _owners(upper, e.path)
    packages = [p for p in plan.install if p.name in owners] or plan.install
    files = ", ".join(deb_filename(p) for p in packages)
    return LayeringError(
        f"cannot layer {files}: {e} in the new tree; apt-ostree writes nothing through a"
        " symlink and follows none out of the tree"
    )


def _replacements_variant(replaced: list[PlannedPackage]) -> Any:
    from apt_ostree.ostree import GLib

    return GLib.Variant("a(sss)", [(p.name, p.replaces or "", p.version) for p in replaced])


def _packages_variant(packages: list[PackageInfo]) -> Any:
    from apt_ostree.ostree import GLib

    return GLib.Variant("a(sss)", [(p.name, p.version, p.arch) for p in packages])


def _check_var_toplevels(var: Tree) -> None:
    if var.is_dir("usrlocal") and var.listdir("usrlocal", strict=True):
        raise LayeringError(
            "a package wrote to /usr/local, which is /var/usrlocal on an OSTree system;"
            " it cannot be layered"
        )
