"""How much room in /boot a new deployment needs, from its boot files."""

from __future__ import annotations

from pathlib import Path

import pytest

from apt_ostree.ostree.bootfs import (
    LOADER_MARGIN,
    BootFile,
    KernelLayout,
    bytes_to_install,
    format_size,
    not_enough_space_message,
)

LAYOUT = KernelLayout(
    (
        BootFile("vmlinuz-6.1.0", 8_000_001, "a" * 64),
        BootFile("initramfs-6.1.0.img", 40_000_000, "b" * 64),
    )
)


def test_a_new_kernel_costs_its_files_in_whole_blocks_plus_the_loader_margin() -> None:
    assert bytes_to_install(LAYOUT, [], 4096) == 8_003_584 + 40_001_536 + LOADER_MARGIN


def test_files_already_in_a_bootcsum_directory_cost_nothing(tmp_path: Path) -> None:
    (tmp_path / "vmlinuz-6.1.0").write_text("")
    (tmp_path / "initramfs-6.1.0.img").write_text("")
    assert bytes_to_install(LAYOUT, [tmp_path], 4096) == LOADER_MARGIN


def test_only_the_missing_files_are_counted(tmp_path: Path) -> None:
    (tmp_path / "vmlinuz-6.1.0").write_text("")
    assert bytes_to_install(LAYOUT, [tmp_path / "absent", tmp_path], 1024) == (
        40_000_512 + LOADER_MARGIN
    )


def test_without_boot_files_only_the_margin_is_needed() -> None:
    assert bytes_to_install(None, [], 4096) == LOADER_MARGIN


def test_layouts_with_the_same_files_have_the_same_identity() -> None:
    reordered = KernelLayout(tuple(reversed(LAYOUT.files)))
    other = KernelLayout((BootFile("vmlinuz-6.1.0", 8_000_001, "c" * 64), LAYOUT.files[1]))
    assert reordered.identity == LAYOUT.identity
    assert other.identity != LAYOUT.identity


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 bytes"), (999, "999 bytes"), (1000, "1.0 kB"), (45_200_000, "45.2 MB"),
     (999_960_000, "1.0 GB"), (12_345_678_901_234, "12345.7 GB")],
)  # fmt: skip
def test_sizes_are_printed_in_decimal_units(size: int, text: str) -> None:
    assert format_size(size) == text


def test_the_message_is_one_line_that_says_what_to_do() -> None:
    assert not_enough_space_message(45_200_000, 12_100_000) == (
        "not enough space in /boot for the new deployment: needs 45.2 MB, 12.1 MB free"
        ' (remove old deployments with "apt-ostree cleanup -r" or free space in /boot)'
    )
