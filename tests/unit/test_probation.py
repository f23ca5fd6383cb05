"""Boot counting in the generated GRUB menu, run by real GRUB (grub-emu).

Each test writes a /boot filesystem image (ext4, as apt-ostree's disk images
have) with the menu that apt_ostree.boot.grubcfg generates and a GRUB
environment block, and boots grub-emu on it: GRUB's own ext2 driver, `load_env`
and `save_env` (which writes into the image through the file's blocklist) run
the script; the test reads the entry GRUB chose, the kargs it would pass and the
block it left behind. Every counter state is covered, and the Python model of
the table (`probation.next_boot`, which Linux uses) must agree with GRUB.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pexpect
import pytest

from apt_ostree.boot import grubcfg, grubenv, probation
from apt_ostree.settings import MAX_BOOT_ATTEMPTS

pytestmark = pytest.mark.skipif(
    shutil.which("grub-emu") is None or shutil.which("debugfs") is None,
    reason="needs grub-emu (make deps) and debugfs",
)

TOKEN = "0123456789abcdef"
ENTRIES = [
    grubcfg.BootEntry("new", 2, "/vmlinuz-new", "/initrd-new", "root=UUID=r rw", "ostree-2-debian"),
    grubcfg.BootEntry("old", 1, "/vmlinuz-old", "/initrd-old", "root=UUID=r rw", "ostree-1-debian"),
]
# Run after the generated menu: what GRUB would boot, then stop before the menu.
WRAPPER = """\
source ($root)/loader/grub.cfg
echo "RESULT default=$default kargs=[$apt_ostree_kargs]"
halt
"""


class Boot:
    """A /boot filesystem image and grub-emu booting it."""

    def __init__(self, tmp_path: Path, env: dict[str, str] | None) -> None:
        tree = tmp_path / "tree"
        (tree / "grub").mkdir(parents=True)
        (tree / "loader").mkdir()
        (tree / "grub/grub.cfg").write_text(WRAPPER)
        (tree / "loader/grub.cfg").write_text(grubcfg.render(ENTRIES, TOKEN))
        if env is not None:
            grubenv.write(tree / "grub/grubenv", env)
        self.image = tmp_path / "boot.img"
        subprocess.run(["mkfs.ext4", "-q", "-d", tree, self.image, "8M"], check=True)
        self.device_map = tmp_path / "device.map"
        self.device_map.write_text(f"(hd0) {self.image}\n")

    def grub(self) -> tuple[int, str]:
        """One boot: the default entry GRUB chose and the kargs of entry 0's variable."""
        child = pexpect.spawn("grub-emu", ["-m", str(self.device_map), "-r", "hd0", "-d", "/grub"],
                              encoding="utf-8", timeout=30, dimensions=(24, 500))  # fmt: skip
        child.expect(r"RESULT default=(\d+) kargs=\[([^\]]*)\]")
        default, kargs = int(child.match.group(1)), child.match.group(2)
        child.expect(pexpect.EOF)
        child.close()
        return default, kargs

    def env_bytes(self) -> bytes:
        return subprocess.run(["debugfs", "-R", "cat /grub/grubenv", self.image],
                              capture_output=True, check=True).stdout  # fmt: skip

    def env(self) -> dict[str, str] | None:
        data = self.env_bytes()
        return grubenv.parse(data) if data else None


ON_PROBATION = [{probation.TOKEN_VAR: TOKEN, probation.TRIES_VAR: str(n)}
                for n in range(MAX_BOOT_ATTEMPTS + 1)]  # fmt: skip
NOT_ON_PROBATION = [
    {},
    {probation.TOKEN_VAR: "another-menu", probation.TRIES_VAR: "2"},
    {probation.TOKEN_VAR: TOKEN},
    {probation.TOKEN_VAR: TOKEN, probation.TRIES_VAR: "x"},
    {probation.TOKEN_VAR: TOKEN, probation.TRIES_VAR: str(MAX_BOOT_ATTEMPTS + 1)},
    {probation.TOKEN_VAR: TOKEN, probation.TRIES_VAR: "-1"},
]


@pytest.mark.parametrize("env", ON_PROBATION, ids=lambda e: f"tries={e[probation.TRIES_VAR]}")
def test_every_counter_state_steps_as_the_table_says(tmp_path: Path, env: dict[str, str]) -> None:
    boot = Boot(tmp_path, env)
    default, kargs = boot.grub()
    after = boot.env()
    assert after is not None
    tries = int(env[probation.TRIES_VAR])
    if tries == 0:  # spent: the previous deployment, nothing written
        assert (default, kargs) == (1, "")
        assert after == env
    else:  # one attempt less, the new deployment with the fail-fast kargs
        assert (default, kargs) == (0, probation.FAIL_FAST_KARGS)
        assert after == {**env, probation.TRIES_VAR: str(tries - 1)}
    step = probation.next_boot(env, TOKEN)
    assert (step.entry, step.writes, step.fail_fast) == (
        default, after[probation.TRIES_VAR] if after != env else None, bool(kargs))  # fmt: skip


@pytest.mark.parametrize("env", NOT_ON_PROBATION, ids=str)
def test_a_machine_not_on_probation_boots_the_default_and_grub_writes_nothing(
    tmp_path: Path, env: dict[str, str]
) -> None:
    boot = Boot(tmp_path, env)
    before = boot.env_bytes()
    assert boot.grub() == (0, "")
    assert boot.env_bytes() == before
    assert probation.next_boot(env, TOKEN) is probation.NOT_ON_PROBATION


def test_no_environment_block_boots_the_default(tmp_path: Path) -> None:
    boot = Boot(tmp_path, None)
    assert boot.grub() == (0, "")
    assert boot.env() is None


def test_armed_for_three_boots_grub_falls_back_on_the_fourth(tmp_path: Path) -> None:
    boot = Boot(tmp_path, {"unrelated": "kept"})
    # Arm as the generator does, on the image's block (written in place by GRUB later).
    tree = tmp_path / "armed"
    (tree / "grub").mkdir(parents=True)
    grubenv.write(tree / "grub/grubenv", boot.env() or {})
    probation.arm(tree, TOKEN, 3)
    subprocess.run(["debugfs", "-w", "-R", "rm /grub/grubenv", boot.image], check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run(["debugfs", "-w", "-R", f"write {tree / 'grub/grubenv'} /grub/grubenv",
                    boot.image], check=True, capture_output=True)  # fmt: skip
    chosen = [boot.grub()[0] for _ in range(5)]
    assert chosen == [0, 0, 0, 1, 1]
    env = boot.env()
    assert env == {"unrelated": "kept", probation.TOKEN_VAR: TOKEN, probation.TRIES_VAR: "0"}


def test_the_blocks_apt_ostree_writes_are_read_by_grub_editenv(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    grubenv.write(path, {"a": "1"})
    probation.arm(tmp_path, TOKEN, 3)  # tmp_path/grub/grubenv
    listed = subprocess.run(["grub-editenv", tmp_path / "grub/grubenv", "list"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert listed.splitlines() == [f"{probation.TOKEN_VAR}={TOKEN}", f"{probation.TRIES_VAR}=3"]
    assert (tmp_path / "grub/grubenv").stat().st_size == grubenv.SIZE
    assert probation.disarm(tmp_path) is True
    assert grubenv.read(tmp_path / "grub/grubenv") == {}
    assert probation.disarm(tmp_path) is False  # a good boot off probation writes nothing
