"""A symlink that a package plants where apt-ostree goes after dpkg never leads it out
of the tree.

Once dpkg is done, apt-ostree's own code works on the new tree as root, outside the
sandbox: it moves /opt content to /usr/lib/opt, writes tmpfiles.d and sysusers.d
lines, copies /var files into the factory, removes its policy-rc.d, reads the
accounts and the dpkg database, chmods the regenerated initramfs; the next dpkg
run binds package state into the sandbox. A package can put a symlink at each of
those paths, absolute or relative (`../` far past the tree's root), in its
data.tar or from its postinst. Each link here points at a host directory (or
file) that the test owns, with a sentinel in it.

Each case is either refused, with one error line that names the package's file,
and nothing is deployed; or layered. Either way the host directory is unchanged
(same entries, content and modes) and `ostree fsck` is clean. A base commit (which
an image controls just as much) with such links is refused too.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from apt_ostree.ostree import OSTree
from apt_ostree.ostree import repo as ostree_repo
from tests.fixtures.debianbase import DebianSysroot
from tests.fixtures.deployments import fsck
from tests.fixtures.layerpkgs import PLANTED_LINKS, PlantedLink, build_planted_link_deb
from tests.fixtures.sysroot import apt_ostree, deployments_json

UP = "../" * 40
# Looks like a passwd line: read as the tree's /etc/passwd, it would become a user.
SENTINEL = "sentinel:x:4242:4242:host sentinel:/nonexistent:/usr/sbin/nologin\n"

# (data.tar, postinst) -> what layering does: "refused" (one line naming the .deb)
# or "layered". See docs/security.md, "Paths inside a tree".
OUTCOMES: dict[str, tuple[str, str]] = {
    "usr-lib-opt": ("refused", "refused"),
    "var-opt": ("layered", "layered"),  # dpkg keeps the directory; a script's link is an L line
    "var-opt-name": ("layered", "layered"),  # the link itself moves to /usr/lib/opt
    "tmpfiles-d": ("refused", "refused"),
    "sysusers-d": ("refused", "refused"),
    "factory": ("refused", "refused"),
    "factory-var": ("refused", "refused"),
    "factory-var-dir": ("refused", "refused"),
    "policy-rc-d": ("refused", "layered"),  # removed after dpkg, never written through
    "passwd": ("layered", "layered"),  # read inside the tree: nothing there
    "apt-ostree-state": ("refused", "layered"),  # no later dpkg run binds it
    "initramfs": ("refused", "refused"),
    "var-subdir": ("layered", "layered"),  # an L line, as any /var link
    "dpkg-database": ("refused", "dpkg fails"),  # removing it breaks the running dpkg
}
CASES = {link.case: link for link in PLANTED_LINKS}


def snapshot(path: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every entry under `path` (itself included): mode, size, content."""
    out = {}
    for p in [path, *sorted(path.rglob("*"))]:
        st = p.lstat()
        data = p.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        out[str(p.relative_to(path))] = (st.st_mode, st.st_size, data)
    return out


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host directory that no package may reach, with a sentinel file in it."""
    d = tmp_path / "host"
    d.mkdir(mode=0o750)
    (d / "sentinel").write_text(SENTINEL)
    (d / "sentinel").chmod(0o600)
    return d


def link_target(host: Path, link: PlantedLink, kind: str) -> str:
    target = host / "sentinel" if link.to_file else host
    return str(target) if kind == "absolute" else UP + str(target).lstrip("/")


def install(sysroot: DebianSysroot, deb: Path) -> subprocess.CompletedProcess[str]:
    return apt_ostree(sysroot.path, "install", deb)


def assert_refused(proc: subprocess.CompletedProcess[str], deb: Path) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and deb.name in last, proc.stderr
    assert "Traceback" not in proc.stderr


def deployment_dir(sysroot: DebianSysroot) -> Path:
    d = deployments_json(sysroot.path)[0]
    return sysroot.path / f"ostree/deploy/{d['osname']}/deploy/{d['checksum']}.{d['serial']}"


@pytest.mark.parametrize("kind", ["absolute", "relative"])
@pytest.mark.parametrize("by", ["tar", "postinst"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_planted_link_is_refused_or_contained(
    debian_sysroot: DebianSysroot, host: Path, tmp_path: Path, case: str, by: str, kind: str
) -> None:
    link = CASES[case]
    target = link_target(host, link, kind)
    deb = build_planted_link_deb(link, by, target, tmp_path / "debs")
    before = snapshot(host)
    deployments = len(deployments_json(debian_sysroot.path))
    proc = install(debian_sysroot, deb)
    outcome = OUTCOMES[case][by == "postinst"]
    if outcome == "refused":
        assert_refused(proc, deb)
    elif outcome == "dpkg fails":
        assert proc.returncode == 1 and link.package in proc.stderr, proc.stderr
    if outcome == "layered":
        assert proc.returncode == 0, proc.stderr
        assert len(deployments_json(debian_sysroot.path)) == deployments + 1
        tree = deployment_dir(debian_sysroot)
        assert (tree / f"usr/share/dpkg/database/info/{link.package}.list").is_file()
        sysusers = tree / "usr/lib/sysusers.d/apt-ostree-layer.conf"
        assert not sysusers.exists() or "sentinel" not in sysusers.read_text()
    else:
        assert len(deployments_json(debian_sysroot.path)) == deployments
    assert snapshot(host) == before
    fsck(debian_sysroot.path)


def test_a_var_link_becomes_a_tmpfiles_line(debian_sysroot: DebianSysroot, host: Path,
                                             tmp_path: Path) -> None:  # fmt: skip
    deb = build_planted_link_deb(CASES["var-subdir"], "postinst", str(host), tmp_path / "debs")
    assert install(debian_sysroot, deb).returncode == 0
    conf = deployment_dir(debian_sysroot) / "usr/lib/tmpfiles.d/apt-ostree-layer-var.conf"
    assert f"L /var/lib/planted - - - - {host}\n" in conf.read_text()


# --- a base commit with planted links ---------------------------------------------------


def commit_with_link(sysroot: DebianSysroot, path: str, target: str) -> str:
    """The base commit with `path` (a directory in it) replaced by a symlink to `target`."""
    repo = ostree_repo.open_repo(sysroot.path / "ostree/repo")
    repo.prepare_transaction(None)
    try:
        mtree = OSTree.MutableTree.new_from_commit(repo, sysroot.base_checksum)
        *parents, name = path.split("/")
        parent = mtree
        for part in parents:
            _, parent = parent.ensure_dir(part)
        # ensure_dir() loads the lazily read parent (remove() alone finds it empty).
        parent.ensure_dir(name)
        parent.remove(name, False)
        parent.replace_file(name, repo.write_symlink(None, 0, 0, None, target, None))
        _, root = repo.write_mtree(mtree, None)
        _, checksum = repo.write_commit(
            sysroot.base_checksum, f"base with /{path} -> {target}", None, None, root, None
        )
        repo.commit_transaction(None)
    except BaseException:
        repo.abort_transaction(None)
        raise
    return str(checksum)


@pytest.mark.parametrize("kind", ["absolute", "relative"])
@pytest.mark.parametrize(
    ("path", "message"),
    [
        # bwrap would bind the host directory as the sandbox's /var/cache/debconf
        ("usr/lib/apt-ostree/state/debconf", "binds it into the sandbox"),
        # libapt would read the host's status file, dpkg would write the host's database
        ("usr/share/dpkg/database", "cannot layer packages on this base commit"),
    ],
)
def test_base_commit_with_a_planted_link_is_refused(
    debian_sysroot: DebianSysroot, host: Path, layer_repo: object, path: str, message: str,
    kind: str,
) -> None:  # fmt: skip
    target = str(host) if kind == "absolute" else UP + str(host).lstrip("/")
    base = commit_with_link(debian_sysroot, path, target)
    proc = apt_ostree(debian_sysroot.path, "deploy", "--skip-branch-check", base)
    assert proc.returncode == 0, proc.stderr
    deployments = deployments_json(debian_sysroot.path)
    before = snapshot(host)
    proc = apt_ostree(debian_sysroot.path, "install", "dep-bottom")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"/{path} is a symbolic link" in last, proc.stderr
    assert message in last
    assert deployments_json(debian_sysroot.path) == deployments
    assert snapshot(host) == before
    assert os.listdir(host) == ["sentinel"]
    fsck(debian_sysroot.path)
