"""`apt-ostree initramfs-etc` on an offline sysroot: the tracked files of /etc are in
the default boot entry's overlay initrd (a cpio archive, unpacked here with cpio),
refreshed by every new deployment, and gone when untracked."""

from __future__ import annotations

import subprocess
from pathlib import Path

from apt_ostree.boot.grubcfg import read_entries
from tests.fixtures.debianbase import DebianSysroot
from tests.fixtures.deployments import fsck
from tests.fixtures.sysroot import apt_ostree, deployments_json

CONF = "/etc/apt-ostree-test/early.conf"


def run_ok(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = apt_ostree(path, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def overlay_initrds(path: Path) -> list[Path]:
    """The default boot entry's initrds after the deployment's own initramfs."""
    entry = read_entries(path / "boot/loader/entries")[0]
    assert entry.initrd is not None
    return [path / "boot" / p.lstrip("/") for p in entry.initrd.split()[1:]]


def unpack(archive: Path, dest: Path) -> Path:
    dest.mkdir()
    subprocess.run(
        ["cpio", "-idm", "--quiet", "--no-absolute-filenames", "-D", str(dest)],
        input=archive.read_bytes(), check=True, capture_output=True,
    )  # fmt: skip
    return dest


def test_tracked_file_is_in_the_overlay_initrd_until_untracked(
    debian_sysroot: DebianSysroot, tmp_path: Path
) -> None:
    path, etc = debian_sysroot.path, debian_sysroot.etc
    (etc / "apt-ostree-test").mkdir()
    (etc / "apt-ostree-test/early.conf").write_text("first\n")
    assert run_ok(path, "initramfs-etc").stdout == "No tracked files.\n"
    assert overlay_initrds(path) == []

    proc = run_ok(path, "initramfs-etc", f"--track={CONF}")
    assert proc.stdout.startswith(f"Tracked: {CONF}\n")
    d = deployments_json(path)[0]
    assert d["initramfs-etc"] == [CONF] and d["checksum"] == debian_sysroot.base_checksum
    [archive] = overlay_initrds(path)
    assert archive.is_file()
    tree = unpack(archive, tmp_path / "one")
    assert (tree / CONF.lstrip("/")).read_text() == "first\n"
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*")) == [
        "etc", "etc/apt-ostree-test", "etc/apt-ostree-test/early.conf",
    ]  # fmt: skip
    assert not list(Path("/run/ostree/staged-initrds").glob(archive.stem))

    # Nothing to do: exit 77 when asked.
    again = apt_ostree(path, "initramfs-etc", f"--track={CONF}", "--unchanged-exit-77")
    assert again.returncode == 77, again.stderr

    # Every new deployment takes the file as it is then (here: a kargs change).
    new_etc = path / "ostree/deploy" / debian_sysroot.osname / "deploy"
    run_ok(path, "kargs", "--append=etc-test")
    d = deployments_json(path)[0]
    (new_etc / f"{d['checksum']}.{d['serial']}/{CONF.lstrip('/')}").write_text("second\n")
    run_ok(path, "initramfs-etc", "--force-sync")
    [archive] = overlay_initrds(path)
    assert (unpack(archive, tmp_path / "two") / CONF.lstrip("/")).read_text() == "second\n"
    assert "etc-test" in deployments_json(path)[0]["kernel-arguments"]

    proc = run_ok(path, "initramfs-etc", f"--untrack={CONF}")
    assert proc.stdout.startswith(f"Untracked: {CONF}\n")
    assert overlay_initrds(path) == []
    assert deployments_json(path)[0]["initramfs-etc"] == []
    fsck(path)


def test_bad_paths_are_refused(debian_sysroot: DebianSysroot) -> None:
    path = debian_sysroot.path
    for args, message in (
        (["--track=/usr/lib/os-release"], "only paths under /etc"),
        (["--track=etc/hostname"], "only paths under /etc"),
        (["--track=/etc/../usr/lib/os-release"], "only paths under /etc"),
        (["--track=/etc/no-such-file"], "cannot track /etc/no-such-file: no such file"),
    ):
        proc = apt_ostree(path, "initramfs-etc", *args)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
        assert len(deployments_json(path)) == 1
