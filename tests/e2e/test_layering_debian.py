"""Layering real Debian packages from the host's configured APT sources (slow).

uuid-runtime's postinst creates the system user `uuidd`; nano registers itself
with update-alternatives as `editor`. openssh-server's postinst generates SSH
host keys: they are machine secrets, never in a commit, made once on the
machine (here: by running the boot-time generator in the deployment, as
apt-ostree-machine-secrets.service does) and kept by every later deployment.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from apt_ostree.debian.sources import host_sources
from tests.fixtures.debianbase import DebianSysroot, replace_apt_sources
from tests.fixtures.deployments import fsck
from tests.fixtures.sysroot import apt_ostree, deployments_json

pytestmark = pytest.mark.slow


TOP = Path(__file__).resolve().parents[2]
SECRETS_SCRIPT = TOP / "data/lib/machine-secrets"


def deployment_dir(sysroot: DebianSysroot) -> Path:
    d = deployments_json(sysroot.path)[0]
    return sysroot.path / f"ostree/deploy/{d['osname']}/deploy/{d['checksum']}.{d['serial']}"


def test_real_packages_with_a_system_user_and_alternatives(
    debian_sysroot: DebianSysroot,
) -> None:
    # The host's sources instead of the fixture repository.
    stanzas = "\n\n".join(s.strip() for s in host_sources()) + "\n"
    replace_apt_sources(debian_sysroot.etc, stanzas)
    proc = apt_ostree(debian_sysroot.path, "install", "uuid-runtime", "nano")
    assert proc.returncode == 0, proc.stderr
    tree = deployment_dir(debian_sysroot)
    d = deployments_json(debian_sysroot.path)[0]
    assert sorted(d["packages"]) == ["nano", "uuid-runtime"]
    assert d["base-checksum"] == debian_sysroot.base_checksum
    sysusers = (tree / "usr/lib/sysusers.d/apt-ostree-layer.conf").read_text()
    assert "u uuidd " in sysusers
    editor = tree / "usr/etc/alternatives/editor"
    assert editor.is_symlink() and "nano" in str(editor.readlink())
    audit = subprocess.run(
        ["dpkg", f"--root={tree}", f"--admindir={tree}/usr/share/dpkg/database", "--audit"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert audit.returncode == 0 and audit.stdout == ""
    fsck(debian_sysroot.path)


def use_host_sources(sysroot: DebianSysroot) -> None:
    stanzas = "\n\n".join(s.strip() for s in host_sources()) + "\n"
    replace_apt_sources(sysroot.etc, stanzas)


def boot(tree: Path) -> None:
    """What apt-ostree-machine-secrets.service does at boot, in the deployment."""
    subprocess.run(
        ["bwrap", "--bind", tree, "/", "--bind", tree / "etc", "/etc", "--proc", "/proc",
         "--dev", "/dev", "--tmpfs", "/run", "--ro-bind", SECRETS_SCRIPT, "/run/machine-secrets",
         "--unshare-net", "--setenv", "PATH", "/usr/sbin:/usr/bin", "/run/machine-secrets"],
        check=True, capture_output=True,
    )  # fmt: skip


def host_key_fingerprints(tree: Path) -> list[str]:
    keys = sorted((tree / "etc/ssh").glob("ssh_host_*_key.pub"))
    return [
        subprocess.run(["ssh-keygen", "-l", "-f", key], capture_output=True, text=True,
                       check=True).stdout.split()[1]
        for key in keys
    ]  # fmt: skip


def private_keys_in_commits(sysroot: DebianSysroot) -> list[str]:
    found = []
    for d in deployments_json(sysroot.path):
        listing = subprocess.run(
            ["ostree", f"--repo={sysroot.path}/ostree/repo", "ls", "-R", d["checksum"], "/usr/etc"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        found += [line.split()[-1] for line in listing.splitlines()
                  if re.search(r"(ssh_host_\w+_key|snakeoil\.key)$", line)]  # fmt: skip
    return found


def newer_base(sysroot: DebianSysroot, parent: str, n: int, tmp_path: Path) -> str:
    extra = tmp_path / f"extra-{n}"
    (extra / "usr/share").mkdir(parents=True)
    (extra / "usr/share/newer-base").write_text(f"{n}\n")
    return subprocess.run(
        # On a branch: a base that no ref names is pruned once no deployment uses it.
        ["ostree", f"--repo={sysroot.path}/ostree/repo", "commit", "--branch=test/newer-base",
         f"--parent={parent}", "--owner-uid=0", "--owner-gid=0",
         f"--tree=ref={parent}", f"--tree=dir={extra}", "-s", f"newer base {n}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def test_ssh_host_keys_are_made_once_on_the_machine_and_never_committed(
    debian_sysroot: DebianSysroot, tmp_path: Path
) -> None:
    use_host_sources(debian_sysroot)
    proc = apt_ostree(debian_sysroot.path, "install", "openssh-server")
    assert proc.returncode == 0, proc.stderr
    tree = deployment_dir(debian_sysroot)
    assert private_keys_in_commits(debian_sysroot) == []
    assert not list((tree / "etc/ssh").glob("ssh_host_*")), "keys must be made at boot"
    conf = (tree / "usr/lib/apt-ostree/machine-secrets.d").glob("*.conf")
    assert "/etc/ssh/ssh_host_ed25519_key ssh-keygen -A" in "".join(c.read_text() for c in conf)
    boot(tree)
    fingerprints = host_key_fingerprints(tree)
    assert len(fingerprints) == 3  # rsa, ecdsa, ed25519, as Debian's postinst makes them

    # Relayer (another package), then two newer bases: the machine keeps its keys.
    assert apt_ostree(debian_sysroot.path, "install", "nano").returncode == 0
    base = debian_sysroot.base_checksum
    for n in (1, 2):
        base = newer_base(debian_sysroot, base, n, tmp_path)
        proc = apt_ostree(debian_sysroot.path, "deploy", "--skip-branch-check", base)
        assert proc.returncode == 0, proc.stderr
    tree = deployment_dir(debian_sysroot)
    assert deployments_json(debian_sysroot.path)[0]["base-checksum"] == base
    boot(tree)
    assert host_key_fingerprints(tree) == fingerprints
    assert private_keys_in_commits(debian_sysroot) == []
    dpkg_db = ["-o", f"Dir::State::status={tree}/usr/share/dpkg/database/status"]
    audit = subprocess.run(
        ["dpkg", f"--root={tree}", f"--admindir={tree}/usr/share/dpkg/database", "--audit"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert audit.returncode == 0 and audit.stdout == ""
    check = subprocess.run(["apt-get", *dpkg_db, "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    fsck(debian_sysroot.path)
