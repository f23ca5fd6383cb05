"""Package diffs and their rpm-ostree formats."""

from __future__ import annotations

from apt_ostree.cli.db import format_diff_block, format_diff_lines
from apt_ostree.system.db import (
    Package,
    diff_entries,
    diff_packages,
    diff_to_json,
    dpkg_db_version,
)


def pkgs(*specs: str) -> list[Package]:
    return [Package(*spec.split("_")) for spec in specs]


def test_diff_sorts_changes_into_upgraded_downgraded_removed_added() -> None:
    diff = diff_packages(
        pkgs("a_1.0_amd64", "b_2.0_amd64", "c_1_all", "e_1:0.1_amd64"),
        pkgs("a_1.0~rc1_amd64", "b_10.0_amd64", "d_1_all", "e_2.0_amd64"),
    )
    assert format_diff_block(diff_to_json(diff)) == [
        "Upgraded:", "  b 2.0 -> 10.0",
        "Downgraded:", "  a 1.0 -> 1.0~rc1", "  e 1:0.1 -> 2.0",
        "Removed:", "  c_1_all",
        "Added:", "  d_1_all",
    ]  # fmt: skip


def test_diff_format_is_by_package_name() -> None:
    diff = diff_packages(pkgs("b_1_all", "c_1_all"), pkgs("a_1_all", "b_2_all"))
    assert format_diff_lines(diff_to_json(diff)) == ["+a_1_all", "!b_1_all", "=b_2_all", "-c_1_all"]


def test_architecture_change_alone_is_a_modification() -> None:
    diff = diff_packages(pkgs("tzdata_2024a_all"), pkgs("tzdata_2024a_amd64"))
    assert [(a.arch, b.arch) for a, b in diff.upgraded] == [("all", "amd64")]
    assert not diff.added and not diff.removed
    assert format_diff_block(diff_to_json(diff)) == [
        "Upgraded:",
        "  tzdata 2024a (all) -> 2024a (amd64)",
    ]


def test_multiarch_packages_are_told_apart() -> None:
    diff = diff_packages(
        pkgs("libc6_2.36_amd64", "libc6_2.36_i386"), pkgs("libc6_2.37_amd64", "libc6_2.36_i386")
    )
    assert format_diff_block(diff_to_json(diff)) == ["Upgraded:", "  libc6:amd64 2.36 -> 2.37"]


def test_json_entries_are_sorted_by_type_then_name() -> None:
    diff = diff_packages(pkgs("z_1_all", "y_1_all", "x_2_all"), pkgs("x_1_all", "w_1_all"))
    assert [(name, kind) for name, kind, _, _ in diff_entries(diff)] == [
        ("w", 0), ("y", 1), ("z", 1), ("x", 3),
    ]  # fmt: skip


def test_db_version_ignores_input_order() -> None:
    a = pkgs("a_1_all", "b_2_amd64")
    assert dpkg_db_version(a) == dpkg_db_version(reversed(a))
    assert dpkg_db_version(a) != dpkg_db_version(pkgs("a_1_all", "b_3_amd64"))
