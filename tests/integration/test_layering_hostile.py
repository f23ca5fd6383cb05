"""Hostile maintainer scripts and dracut modules, layered on a real Debian base.

Each package tries one of the kernel's doors out of the sandbox (docs/security.md,
"The sandbox") and records in its tree what every attempt got: the layering
succeeds, every attempt failed with EPERM, nothing outside the tree changed
(sentinels in the base deployment, the merge deployment's /etc, the sysroot, its
repository and stored .debs, and on the host), and `ostree fsck` is clean.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import sys
from pathlib import Path

import pexpect
import pytest

from tests.fixtures.debianbase import DebianSysroot
from tests.fixtures.layerpkgs import HOSTILE_DRACUT_ESCAPE, INJECTED, read_hostile_result
from tests.fixtures.sentinels import Sentinels, plant_sentinels
from tests.fixtures.sysroot import TOP, apt_ostree, deployments_json
from tests.integration.test_layering import assert_healthy, ostree_cat

# A password hash as crypt(3) writes one: `$id$salt$hash` (yescrypt: `$y$...`).
HASH = re.compile(r"\$[0-9a-z]+\$[^:\s]+")
MACHINE_HASH = "$6$apt-ostree-test$machine.password.hash.from.the.merge.deployment"


@pytest.fixture
def sentinels(debian_sysroot: DebianSysroot) -> Sentinels:
    return plant_sentinels(debian_sysroot)


def layer(sysroot: DebianSysroot, deb: Path) -> Path:
    """Layer `deb`; the new deployment's tree, checked healthy."""
    proc = apt_ostree(sysroot.path, "install", deb)
    assert proc.returncode == 0, proc.stderr
    return assert_healthy(sysroot)


def test_tiocsti_cannot_type_into_the_terminal_of_apt_ostree(
    debian_sysroot: DebianSysroot, hostile_debs: dict[str, Path], sentinels: Sentinels
) -> None:
    # apt-ostree runs with a real pty as its controlling terminal, as from a shell;
    # what the postinst pushed into it, the shell would read after apt-ostree exits.
    cmd = [sys.executable, "-m", "apt_ostree", "--sysroot", str(debian_sysroot.path),
           "install", str(hostile_debs["hostile-tiocsti"])]  # fmt: skip
    shell = f"{shlex.join(cmd)}; echo exit=$?; read -r -t 2 typed; echo typed=[$typed]"
    env = dict(os.environ, PYTHONPATH=str(TOP / "src"))
    child = pexpect.spawn("/bin/bash", ["-c", shell], env=env, encoding="utf-8", timeout=900)
    child.expect(pexpect.EOF)
    output = child.before
    assert "exit=0" in output, output
    assert "typed=[]" in output and INJECTED not in output
    tree = assert_healthy(debian_sysroot)
    attempts = read_hostile_result(tree, "hostile-tiocsti")
    # A new session: no controlling terminal; stdin is /dev/null, stdout a pipe.
    assert attempts["dev-tty"] == errno.ENXIO
    assert attempts["fd0"] == attempts["fd1"] == attempts["fd2"] == errno.EPERM
    # Even on a terminal that is its own, the filter refuses TIOCSTI.
    assert attempts["own-pty"] == errno.EPERM
    sentinels.assert_untouched()


def test_open_by_handle_at_is_refused(
    debian_sysroot: DebianSysroot, hostile_debs: dict[str, Path], sentinels: Sentinels
) -> None:
    tree = layer(debian_sysroot, hostile_debs["hostile-handle"])
    assert read_hostile_result(tree, "hostile-handle") == {
        "name_to_handle_at": errno.EPERM,
        "open_by_handle_at": errno.EPERM,
    }
    sentinels.assert_untouched()


def test_ptrace_of_the_parent_is_refused(
    debian_sysroot: DebianSysroot, hostile_debs: dict[str, Path], sentinels: Sentinels
) -> None:
    tree = layer(debian_sysroot, hostile_debs["hostile-ptrace"])
    assert read_hostile_result(tree, "hostile-ptrace") == {
        "ptrace-attach": errno.EPERM,
        "ptrace-seize": errno.EPERM,
        "process_vm_readv": errno.EPERM,
    }
    sentinels.assert_untouched()


def _host_hashes() -> set[str]:
    return set(HASH.findall(Path("/etc/shadow").read_text()))


def test_scripts_see_no_password_hash_and_none_enters_the_commit(
    debian_sysroot: DebianSysroot, hostile_debs: dict[str, Path], sentinels: Sentinels
) -> None:
    shadow = debian_sysroot.etc / "shadow"
    text = shadow.read_text()
    shadow.write_text(re.sub(r"^root:[^:]*:", f"root:{MACHINE_HASH}:", text, flags=re.M))
    tree = layer(debian_sysroot, hostile_debs["hostile-shadow"])
    seen = (tree / "usr/share/hostile-shadow/seen").read_text()
    # The scripts get the machine's accounts, every one locked and without a hash.
    assert "== /etc/shadow\nroot:!*:" in seen
    assert "== /etc/gshadow\nroot:!::" in seen
    assert not HASH.search(seen) and MACHINE_HASH not in seen
    assert not _host_hashes() & set(HASH.findall(seen))
    # The commit keeps the base's shadow and gshadow, and no other account file.
    layered = deployments_json(debian_sysroot.path)[0]["checksum"]
    for name in ("shadow", "gshadow"):
        base = ostree_cat(debian_sysroot, debian_sysroot.base_checksum, f"/usr/etc/{name}")
        assert ostree_cat(debian_sysroot, layered, f"/usr/etc/{name}") == base
    base_etc = debian_sysroot.deployment / "usr/etc"
    assert sorted(p.name for p in (tree / "usr/etc").glob("*shadow*")) == sorted(
        p.name for p in base_etc.glob("*shadow*")
    )
    assert MACHINE_HASH in shadow.read_text()
    sentinels.assert_untouched()


def test_dracut_module_cannot_mount_load_a_module_or_read_secrets(
    debian_sysroot: DebianSysroot, hostile_debs: dict[str, Path], sentinels: Sentinels
) -> None:
    shadow = debian_sysroot.etc / "shadow"
    text = shadow.read_text()
    shadow.write_text(re.sub(r"^root:[^:]*:", f"root:{MACHINE_HASH}:", text, flags=re.M))
    proc = apt_ostree(debian_sysroot.path, "install", hostile_debs["hostile-dracut"])
    assert proc.returncode == 0, proc.stderr
    assert "Regenerating the initramfs" in proc.stderr
    tree = assert_healthy(debian_sysroot)
    attempts = read_hostile_result(tree, "hostile-dracut")
    refused = ("mount-tmpfs", "mknod-block", "mount-block", "finit_module", "init_module")
    assert {what: attempts[what] for what in refused} == dict.fromkeys(refused, errno.EPERM)
    # / is the tree: the write landed there (and was dropped with the overlay's
    # other top-level entries), not on the host; the tree has no sysroot.
    assert attempts[f"write {HOSTILE_DRACUT_ESCAPE}"] == 0
    assert not Path(HOSTILE_DRACUT_ESCAPE).exists()
    assert not (tree / HOSTILE_DRACUT_ESCAPE.lstrip("/")).exists()
    assert attempts["write /sysroot/ostree/repo/hostile-dracut"] == errno.ENOENT
    # dracut sees the tree's /etc, whose shadow the scripts got: no hash.
    assert attempts["shadow-hashes"] == 0
    sentinels.assert_untouched()
