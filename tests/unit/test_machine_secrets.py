"""Machine secrets (private keys that maintainer scripts generate under /etc)
are found by rule, left out of the tree, and made again on the machine at boot."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from apt_ostree.compose.postprocess import PostprocessOptions, postprocess_tree
from apt_ostree.machine_secrets import SECRETS_DIR, find_machine_secrets, strip_machine_secrets
from apt_ostree.treefs import Tree
from tests.fixtures.trees import make_tree

TOP = Path(__file__).resolve().parents[2]
SCRIPT = TOP / "data/lib/machine-secrets"
ETC = "usr/etc"


def ssh_host_keys(etc: Path) -> None:
    (etc / "ssh").mkdir(parents=True)
    for kind in ("rsa", "ed25519"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", etc / f"ssh/ssh_host_{kind}_key"],
            check=True,
        )  # fmt: skip


def snakeoil(etc: Path) -> None:
    (etc / "ssl/private").mkdir(parents=True)
    (etc / "ssl/certs").mkdir(parents=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=test", "-keyout", etc / "ssl/private/ssl-cert-snakeoil.key",
         "-out", etc / "ssl/certs/ssl-cert-snakeoil.pem"],
        check=True, capture_output=True,
    )  # fmt: skip
    (etc / "ssl/certs/0a1b2c3d.0").symlink_to("ssl-cert-snakeoil.pem")


def test_generated_ssh_host_keys_are_removed_and_made_again_at_boot(tmp_path: Path) -> None:
    etc = tmp_path / ETC
    ssh_host_keys(etc)
    (etc / "ssh/sshd_config").write_text("PermitRootLogin no\n")
    with Tree(tmp_path) as tree:
        secrets = strip_machine_secrets(tree, ETC, {"/etc/ssh/sshd_config"}, conf="t.conf")
    assert [s.path for s in secrets] == [
        "/etc/ssh/ssh_host_ed25519_key",
        "/etc/ssh/ssh_host_rsa_key",
    ]
    assert sorted(os.listdir(etc / "ssh")) == ["sshd_config"]  # the .pub files went too
    conf = (tmp_path / SECRETS_DIR / "t.conf").read_text()
    assert "/etc/ssh/ssh_host_rsa_key ssh-keygen -A\n" in conf
    assert "/etc/ssh/ssh_host_ed25519_key ssh-keygen -A\n" in conf


def test_snakeoil_key_goes_with_its_certificate_and_the_hash_link(tmp_path: Path) -> None:
    etc = tmp_path / ETC
    snakeoil(etc)
    with Tree(tmp_path) as tree:
        [secret] = strip_machine_secrets(tree, ETC, set(), conf="t.conf")
    assert secret.path == "/etc/ssl/private/ssl-cert-snakeoil.key"
    assert sorted(secret.companions) == [
        "/etc/ssl/certs/0a1b2c3d.0",
        "/etc/ssl/certs/ssl-cert-snakeoil.pem",
    ]
    assert os.listdir(etc / "ssl/certs") == [] and os.listdir(etc / "ssl/private") == []
    assert (secret.regenerate or "").startswith("make-ssl-cert generate-default-snakeoil")


def test_keys_that_a_package_ships_and_unowned_certificates_stay(tmp_path: Path) -> None:
    etc = tmp_path / ETC
    snakeoil(etc)
    (etc / "ssl/certs/ca-certificates.crt").write_bytes(
        (etc / "ssl/certs/ssl-cert-snakeoil.pem").read_bytes()
    )
    owned = {"/etc/ssl/private/ssl-cert-snakeoil.key", "/etc/ssl/certs/ssl-cert-snakeoil.pem"}
    with Tree(tmp_path) as tree:
        assert find_machine_secrets(tree, ETC, owned) == []


def test_only_new_files_are_considered_when_a_layer_names_them(tmp_path: Path) -> None:
    etc = tmp_path / ETC
    ssh_host_keys(etc)
    with Tree(tmp_path) as tree:
        found = find_machine_secrets(tree, ETC, set(), new=["/etc/ssh/ssh_host_rsa_key"])
    assert [s.path for s in found] == ["/etc/ssh/ssh_host_rsa_key"]


def test_an_unknown_private_key_is_removed_without_a_generator(tmp_path: Path) -> None:
    etc = tmp_path / ETC
    (etc / "myapp").mkdir(parents=True)
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out",
                    etc / "myapp/server.key"], check=True)  # fmt: skip
    with Tree(tmp_path) as tree:
        [secret] = strip_machine_secrets(tree, ETC, set(), conf="t.conf")
    assert secret.path == "/etc/myapp/server.key" and secret.regenerate is None
    assert not (etc / "myapp/server.key").exists()
    assert not (tmp_path / SECRETS_DIR / "t.conf").exists()


def _boot(confdir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, APT_OSTREE_SECRETS_DIR=str(confdir))
    return subprocess.run([SCRIPT], env=env, capture_output=True, text=True, check=False)


def test_boot_script_makes_a_missing_secret_once(tmp_path: Path) -> None:
    confdir = tmp_path / "machine-secrets.d"
    confdir.mkdir()
    key, runs = tmp_path / "etc/key", tmp_path / "runs"
    (confdir / "a.conf").write_text(
        f"# comment\n{key} mkdir -p {key.parent} && echo x >> {runs} && touch {key}\n"
    )
    assert _boot(confdir).returncode == 0
    assert _boot(confdir).returncode == 0
    assert key.exists() and runs.read_text() == "x\n"


def test_boot_script_fails_when_a_generator_fails(tmp_path: Path) -> None:
    confdir = tmp_path / "machine-secrets.d"
    confdir.mkdir()
    (confdir / "a.conf").write_text(f"{tmp_path}/missing false\n")
    proc = _boot(confdir)
    assert proc.returncode == 1 and "is still missing" in proc.stderr


def test_compose_leaves_host_keys_out_of_the_tree(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", dracut=False)
    ssh_host_keys(root / "etc")
    postprocess_tree(root, PostprocessOptions())
    assert not list((root / "usr/etc/ssh").glob("ssh_host_*"))
    conf = (root / SECRETS_DIR / "apt-ostree-compose.conf").read_text()
    assert "/etc/ssh/ssh_host_rsa_key ssh-keygen -A\n" in conf
