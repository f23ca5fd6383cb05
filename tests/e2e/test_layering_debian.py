"""Layering real Debian packages from the host's configured APT sources (slow).

uuid-runtime's postinst creates the system user `uuidd`; nano registers itself
with update-alternatives as `editor`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from apt_ostree.debian.sources import host_sources
from tests.fixtures.debianbase import DebianSysroot, replace_apt_sources
from tests.fixtures.deployments import fsck
from tests.fixtures.sysroot import apt_ostree, deployments_json

pytestmark = pytest.mark.slow


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
