"""The GRUB config written from ostree's BLS entries (apt_ostree.boot.grubcfg)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from apt_ostree.boot import grubcfg
from apt_ostree.compose.diskimage import parse_size
from apt_ostree.errors import AptOstreeError

TOP = Path(__file__).resolve().parents[2]


def write_entry(entries: Path, name: str, version: int, options: str) -> None:
    entries.mkdir(parents=True, exist_ok=True)
    (entries / f"{name}.conf").write_text(
        f"title Debian GNU/Linux 12 (ostree:{version})\n"
        f"version {version}\n"
        f"options {options}\n"
        f"linux /ostree/debian-abc/vmlinuz-6.1.0\n"
        f"initrd /ostree/debian-abc/initramfs-6.1.0.img\n"
    )


def loader_dir(tmp_path: Path) -> Path:
    loader = tmp_path / "boot/loader.1"
    write_entry(
        loader / "entries", "ostree-1-debian", 1, "root=UUID=r rw ostree=/ostree/boot.1/a/1"
    )
    write_entry(
        loader / "entries", "ostree-2-debian", 2, "root=UUID=r rw ostree=/ostree/boot.1/b/0"
    )
    return loader


def test_newest_deployment_is_the_first_and_default_entry(tmp_path: Path) -> None:
    loader = loader_dir(tmp_path)
    grubcfg.write_config(loader / "grub.cfg")
    text = (loader / "grub.cfg").read_text()
    assert "set default=0" in text
    first, second = text.index("ostree:2"), text.index("ostree:1")
    assert first < second
    assert (
        "    linux /ostree/debian-abc/vmlinuz-6.1.0 $apt_ostree_kargs root=UUID=r rw"
        " ostree=/ostree/boot.1/b/0\n" in text
    )
    assert "    initrd /ostree/debian-abc/initramfs-6.1.0.img\n" in text
    assert text.count("menuentry ") == 2


def test_overlay_initrds_follow_the_initramfs_on_one_initrd_line(tmp_path: Path) -> None:
    entries = tmp_path / "entries"
    write_entry(entries, "ostree-1-debian", 1, "rw")
    with (entries / "ostree-1-debian.conf").open("a") as f:
        f.write("initrd /ostree/initramfs-overlays/0123.img\n")
    [entry] = grubcfg.read_entries(entries)
    text = grubcfg.render([entry], "t")
    assert (
        "    initrd /ostree/debian-abc/initramfs-6.1.0.img /ostree/initramfs-overlays/0123.img\n"
        in text
    )


def test_overlay_initrds_load_the_same_way_on_bios_and_uefi(tmp_path: Path) -> None:
    """One grub.cfg for both GRUB platforms: only the console setup depends on
    `$grub_platform`, the entries (and their initrd line) do not; GRUB parses it."""
    entries = tmp_path / "entries"
    write_entry(entries, "ostree-1-debian", 1, "rw")
    with (entries / "ostree-1-debian.conf").open("a") as f:
        f.write("initrd /ostree/initramfs-overlays/0123.img\n")
    text = grubcfg.render(grubcfg.read_entries(entries), "t")
    branch = text[text.index('if [ "$grub_platform"') : text.index("\nfi\n")]
    assert "initrd" not in branch and "menuentry" not in branch
    assert text.index("\nfi\n") < text.index("menuentry ")
    # GRUB's own parser (grub-common, with grub-pc-bin in APT_PACKAGES).
    subprocess.run(["grub-script-check"], input=text, text=True, check=True)


def test_titles_are_quoted_for_grub() -> None:
    entry = grubcfg.BootEntry("it's", 1, "/vmlinuz", None, "", "ostree-1-x")
    assert "menuentry 'it'\\''s' --id 'ostree-1-x' {" in grubcfg.render([entry], "t")


def test_generator_runs_as_libostree_calls_it(tmp_path: Path) -> None:
    loader = loader_dir(tmp_path)
    with grubcfg.generator_exec() as exe:
        subprocess.run([exe, "-o", loader / "grub.cfg"], check=True)
    assert (loader / "grub.cfg").read_text().count("menuentry ") == 2
    assert not (loader / "grub.cfg.tmp").exists()


def test_installed_script_calls_the_module() -> None:
    script = (TOP / "data/lib/grub2-generate").read_text()
    assert script.startswith("#!/usr/bin/python3\n")
    assert "from apt_ostree.boot.grubcfg import main" in script


def test_generator_fails_without_entries(tmp_path: Path) -> None:
    out = tmp_path / "loader.0/grub.cfg"
    out.parent.mkdir()
    (out.parent / "entries").mkdir()
    (out.parent / "entries/bad.conf").write_text("title no kernel\n")
    proc = subprocess.run([sys.executable, "-m", "apt_ostree.boot.grubcfg", "-o", out],
                          capture_output=True, text=True, cwd=TOP / "src")  # fmt: skip
    assert proc.returncode == 1
    assert "without a linux line" in proc.stderr


@pytest.mark.parametrize(("text", "size"), [("4G", 4 << 30), ("512M", 512 << 20),
                                            ("2GiB", 2 << 30), ("1048576", 1 << 20)])  # fmt: skip
def test_disk_image_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_disk_image_size_must_be_a_size() -> None:
    with pytest.raises(AptOstreeError, match='invalid size "big"'):
        parse_size("big")
