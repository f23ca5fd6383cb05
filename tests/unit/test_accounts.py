"""Stable users and groups and reproducible trees: the compose's own steps, on small trees."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from apt_ostree.compose.accounts import (
    Accounts,
    AccountsError,
    check_stable_ids,
    sysusers_lines,
    write_base_sysusers,
)
from apt_ostree.compose.postprocess import PostprocessOptions, postprocess_tree
from apt_ostree.compose.reproducible import make_reproducible, tree_epoch
from apt_ostree.compose.treefile import load_treefile
from apt_ostree.errors import TreefileError
from apt_ostree.treefs import Tree
from tests.fixtures.trees import make_tree

PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n"
    'svc:x:998:997:A "quoted" service:/var/lib/svc:/usr/sbin/nologin\n'
)
GROUP = "root:x:0:\nnogroup:x:65534:\nsvc:x:997:\n"


def etc_tree(root: Path, passwd: str = PASSWD, group: str = GROUP) -> Path:
    (root / "usr/etc").mkdir(parents=True)
    (root / "usr/etc/passwd").write_text(passwd)
    (root / "usr/etc/group").write_text(group)
    return root


def test_sysusers_lines_keep_every_id_and_declare_groups_first() -> None:
    assert sysusers_lines(PASSWD, GROUP) == [
        "g root 0",
        "g nogroup 65534",
        "g svc 997",
        'u root 0:0 "root" /root /bin/bash',
        "u _apt 42:65534 - /nonexistent /usr/sbin/nologin",
        'u svc 998:997 "A quoted service" /var/lib/svc /usr/sbin/nologin',
    ]


def test_base_sysusers_file_is_written_in_usr_lib(tmp_path: Path) -> None:
    with Tree(etc_tree(tmp_path)) as tree:
        assert write_base_sysusers(tree, "usr/etc") == 6
    text = (tmp_path / "usr/lib/sysusers.d/apt-ostree-base.conf").read_text()
    assert "u svc 998:997 " in text and "g svc 997" in text


def test_a_changed_uid_fails_the_compose(tmp_path: Path) -> None:
    etc_tree(tmp_path, passwd=PASSWD.replace(":998:", ":996:"))
    previous = Accounts({"passwd": PASSWD, "group": GROUP})
    with pytest.raises(AccountsError) as exc:
        check_stable_ids(previous, tmp_path, check_passwd="previous", check_groups="previous")
    assert str(exc.value).startswith('user "svc" changed its id from 998 to 996')
    assert "check-passwd: {type: none}" in str(exc.value)


def test_a_changed_gid_fails_unless_check_groups_is_none(tmp_path: Path) -> None:
    etc_tree(tmp_path, group=GROUP.replace(":997:", ":995:"))
    previous = Accounts({"passwd": PASSWD, "group": GROUP})
    with pytest.raises(AccountsError, match='group "svc" changed its id from 997 to 995'):
        check_stable_ids(previous, tmp_path, check_passwd="previous", check_groups="previous")
    check_stable_ids(previous, tmp_path, check_passwd="previous", check_groups="none")


def test_new_and_unchanged_accounts_pass_the_check(tmp_path: Path) -> None:
    etc_tree(tmp_path, passwd=PASSWD + "new:x:990:990::/:/usr/sbin/nologin\n")
    previous = Accounts({"passwd": PASSWD, "group": GROUP})
    check_stable_ids(previous, tmp_path, check_passwd="previous", check_groups="previous")


def test_shadow_dates_come_from_source_date_epoch_and_backups_go(tmp_path: Path) -> None:
    etc_tree(tmp_path)
    shadow = tmp_path / "usr/etc/shadow"
    shadow.write_text("root:*:20787:0:99999:7:::\nsvc:!*:20790::::::\nnoage:!*:::::::\n")
    shadow.chmod(0o640)
    os.chown(shadow, 0, 42)
    (tmp_path / "usr/etc/passwd-").write_text("backup")
    db = tmp_path / "usr/share/dpkg/database"
    db.mkdir(parents=True)
    for name in ("status", "status-old", "diversions-old"):
        (db / name).write_text(name)
    with Tree(tmp_path) as tree:
        make_reproducible(tree, 1_700_000_000)  # day 19675
    assert shadow.read_text() == (
        "root:*:19675:0:99999:7:::\nsvc:!*:19675::::::\nnoage:!*:::::::\n"
    )
    st = shadow.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o640, 0, 42)
    assert sorted(p.name for p in db.iterdir()) == ["status"]
    assert not (tmp_path / "usr/etc/passwd-").exists()


def test_default_epoch_is_the_newest_copyright_file(tmp_path: Path) -> None:
    for name, mtime in (("a", 1_600_000_000), ("b", 1_650_000_000)):
        copyright = tmp_path / f"usr/share/doc/{name}/copyright"
        copyright.parent.mkdir(parents=True)
        copyright.write_text(name)
        os.utime(copyright, (mtime, mtime))
    (tmp_path / "usr/share/doc/c").mkdir()
    assert tree_epoch(tmp_path) == 1_650_000_000


def test_treefile_reproducibility_and_account_keys(tmp_path: Path) -> None:
    path = tmp_path / "tf.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            ref: a/b
            source-date-epoch: 1700000000
            check-passwd: {type: previous}
            check-groups: {type: none}
            """
        )
    )
    tf = load_treefile(path)
    assert (tf.source_date_epoch, tf.check_passwd, tf.check_groups) == (
        1_700_000_000, "previous", "none",
    )  # fmt: skip
    path.write_text("ref: a/b\n")
    assert load_treefile(path).check_passwd == "previous"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("source-date-epoch: yesterday", "expected an integer"),
        ("source-date-epoch: -1", "-1 is negative"),
        ("check-passwd: previous", "expected {type: previous} or {type: none}"),
        ("check-groups: {type: file}", "expected {type: previous} or {type: none}"),
    ],
)
def test_bad_reproducibility_and_account_keys_are_errors(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "tf.yaml"
    path.write_text(f"ref: a/b\n{line}\n")
    with pytest.raises(TreefileError, match=message):
        load_treefile(path)


def test_postprocess_writes_the_base_users_and_fixes_the_tree(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    (root / "etc/shadow").write_text("root:*:20787:0:99999:7:::\n")
    (root / "etc/passwd-").write_text("old\n")
    result = postprocess_tree(root, PostprocessOptions(source_date_epoch=1_700_000_000))
    assert result.source_date_epoch == 1_700_000_000
    conf = (root / "usr/lib/sysusers.d/apt-ostree-base.conf").read_text()
    assert "u mail 8:8 - /var/mail /usr/sbin/nologin" in conf and "g mail 8" in conf
    assert (root / "usr/etc/shadow").read_text() == "root:*:19675:0:99999:7:::\n"
    assert not (root / "usr/etc/passwd-").exists()
