"""A base upgrade that brings a new system user, on a machine whose /etc/passwd was edited.

ostree's /etc merge keeps the machine's own /etc/passwd once it differs from the
commit's, so the new user is not in it. The composed base lists its users in
/usr/lib/sysusers.d/apt-ostree-base.conf; deploying runs the new deployment's
systemd-sysusers, which adds the users missing from the merged /etc.

The sysroot is offline (on a tmpfs), deployed from the real composed Debian base
(tests/fixtures/debianbase.py); the upgrade commit is that base with one more
system user, its account files and sysusers.d file written as compose writes them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from apt_ostree.compose.accounts import SYSUSERS_CONF, sysusers_lines
from apt_ostree.compose.sysroot import SysrootRequest, make_sysroot
from apt_ostree.ostree import OSTree
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.ostree.signing import regenerate_summary
from apt_ostree.reporter import NullReporter
from apt_ostree.sandbox import run_in_tree
from tests.fixtures.debianbase import (
    BOOTABLE_REF,
    KARGS,
    OSNAME,
    DebianBase,
    mounted_tmpfs,
)
from tests.fixtures.sysroot import apt_ostree, deployments_json

NEW_USER = "newsvc:x:990:990:New service:/nonexistent:/usr/sbin/nologin\n"
NEW_GROUP = "newsvc:x:990:\n"
MACHINE_USER = "alice:x:1000:1000:Alice:/var/home/alice:/bin/bash\n"


@dataclass
class Machine:
    sysroot: Path
    served: Path  # the archive repo the sysroot's remote `origin` names

    def deployment(self, checksum: str) -> Path:
        return self.sysroot / "ostree/deploy" / OSNAME / "deploy" / f"{checksum}.0"


def _write_file(repo: OSTree.Repo, data: bytes) -> str:
    return str(repo.write_regfile_inline(None, 0, 0, 0o100644, None, list(data), None))


def commit_with_new_system_user(served: Path, base: str) -> str:
    """`base` plus NEW_USER in /usr/etc and in the base's sysusers.d file, on BOOTABLE_REF."""
    repo = ostree_repo.open_repo(served)
    passwd = (ostree_repo.read_commit_file(repo, base, "usr/etc/passwd") or b"").decode()
    group = (ostree_repo.read_commit_file(repo, base, "usr/etc/group") or b"").decode()
    passwd, group = passwd + NEW_USER, group + NEW_GROUP
    conf = "\n".join(sysusers_lines(passwd, group)) + "\n"
    _, commit = repo.load_variant(OSTree.ObjectType.COMMIT, base)
    repo.prepare_transaction(None)
    try:
        mtree = OSTree.MutableTree.new_from_commit(repo, base)
        for path, text in (("usr/etc/passwd", passwd), ("usr/etc/group", group),
                           (SYSUSERS_CONF, conf)):  # fmt: skip
            *dirs, name = path.split("/")
            parent = mtree
            for d in dirs:  # MutableTree.walk through GI stops after the first name
                _, parent = parent.ensure_dir(d)
            parent.replace_file(name, _write_file(repo, text.encode()))
        _, root = repo.write_mtree(mtree, None)
        _, checksum = repo.write_commit(
            base, "a new system user", None, commit.get_child_value(0), root, None
        )
        repo.transaction_set_ref(None, BOOTABLE_REF, checksum)
        repo.commit_transaction(None)
    except BaseException:
        repo.abort_transaction(None)
        raise
    regenerate_summary(repo)
    return str(checksum)


@pytest.fixture
def machine(tmp_path: Path, debian_base: DebianBase) -> Iterator[Machine]:
    served = tmp_path / "served"
    ostree_repo.open_repo(served, create_mode="archive")
    subprocess.run(["ostree", f"--repo={served}", "pull-local", str(debian_base.repo),
                    debian_base.ref], check=True, capture_output=True)  # fmt: skip
    with mounted_tmpfs(tmp_path / "tmpfs", "2g") as mnt:
        make_sysroot(
            SysrootRequest(
                path=mnt / "sysroot", repo=served, ref=BOOTABLE_REF,
                revision=debian_base.checksum, osname=OSNAME, kargs=list(KARGS),
                remote="origin", remote_url=f"file://{served}", gpg_verify=False,
            ),
            NullReporter(),
        )  # fmt: skip
        yield Machine(mnt / "sysroot", served)


def resolves(deployment: Path, database: str, name: str) -> str:
    """`getent DATABASE NAME` run in the deployment: the answer of its own NSS."""
    return run_in_tree(deployment, ["getent", database, name], what="getent", caps=())


def test_composed_base_lists_its_system_users_in_usr_lib(debian_base: DebianBase) -> None:
    repo = ostree_repo.open_repo(debian_base.repo)
    conf = ostree_repo.read_commit_file(repo, debian_base.composed_checksum, SYSUSERS_CONF)
    assert conf is not None
    passwd = ostree_repo.read_commit_file(repo, debian_base.composed_checksum, "usr/etc/passwd")
    assert passwd is not None
    uid = next(line.split(":")[2] for line in passwd.decode().splitlines()
               if line.startswith("systemd-network:"))  # fmt: skip
    assert f"u systemd-network {uid}:" in conf.decode()
    assert "u root 0:0 " in conf.decode() and "g shadow 42" in conf.decode()


def test_new_system_user_reaches_a_machine_whose_passwd_was_edited(
    machine: Machine, debian_base: DebianBase
) -> None:
    etc = machine.deployment(debian_base.checksum) / "etc"
    with (etc / "passwd").open("a") as f:
        f.write(MACHINE_USER)
    with (etc / "group").open("a") as f:
        f.write("alice:x:1000:\n")
    new = commit_with_new_system_user(machine.served, debian_base.checksum)

    proc = apt_ostree(machine.sysroot, "upgrade")
    assert proc.returncode == 0, proc.stderr
    assert deployments_json(machine.sysroot)[0]["checksum"] == new
    deployment = machine.deployment(new)
    passwd = (deployment / "etc/passwd").read_text()
    # The machine's edit is kept (ostree's merge), and the new user is added to it.
    assert MACHINE_USER in passwd
    assert resolves(deployment, "passwd", "newsvc").startswith("newsvc:x:990:990:")
    assert resolves(deployment, "group", "newsvc").startswith("newsvc:x:990:")
    assert "newsvc:" in (deployment / "etc/shadow").read_text()
    # The commit itself is untouched: the user is in the machine's /etc only.
    assert "alice" not in (deployment / "usr/etc/passwd").read_text()
