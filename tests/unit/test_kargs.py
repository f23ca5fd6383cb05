"""Kernel argument editing with ostree's rules (ostree-kernel-args.c), in pure Python."""

from __future__ import annotations

from pathlib import Path

import pytest

from apt_ostree.system.kargs import (
    KargsEdit,
    KargsError,
    KernelArgs,
    read_proc_cmdline,
    split_kargs,
)


def edited(start: str, **edit: list[str]) -> str:
    return str(KargsEdit(**edit).apply(KernelArgs.from_string(start)))


def test_split_keeps_spaces_inside_double_quotes() -> None:
    assert split_kargs(' a=1  b="x y" "c=d e" f\n') == ["a=1", 'b="x y"', '"c=d e"', "f"]


def test_split_rejects_an_unbalanced_quote() -> None:
    with pytest.raises(KargsError, match='unbalanced double quote in kernel arguments: a="b'):
        split_kargs('a="b')


def test_key_without_value_and_key_with_empty_value_are_different() -> None:
    kargs = KernelArgs.from_string("quiet rw=")
    assert kargs.to_list() == ["quiet", "rw="]
    with pytest.raises(KargsError, match='no karg "quiet=" to delete'):
        kargs.delete("quiet=")


def test_append_adds_at_the_end_even_for_a_repeated_key() -> None:
    assert edited("console=tty0 quiet", append=["console=ttyS0"]) == (
        "console=tty0 quiet console=ttyS0"
    )


def test_append_if_missing_looks_at_the_key_only() -> None:
    assert edited("quiet console=tty0", append_if_missing=["console=ttyS0", "rw"]) == (
        "quiet console=tty0 rw"
    )


def test_delete_by_key_when_it_has_one_value() -> None:
    assert edited("a=1 quiet b", delete=["a"]) == "quiet b"


def test_delete_by_key_with_several_values_needs_the_value() -> None:
    with pytest.raises(KargsError, match=r'karg "console" has several values \(console=a'):
        edited("console=a console=b", delete=["console"])
    assert edited("console=a console=b", delete=["console=b"]) == "console=a"


def test_delete_of_a_missing_karg_is_an_error() -> None:
    with pytest.raises(KargsError, match=r'^no karg "foo" to delete$'):
        edited("quiet", delete=["foo"])
    with pytest.raises(KargsError, match=r'^no karg "quiet=1" to delete$'):
        edited("quiet", delete=["quiet=1"])


def test_delete_if_present_ignores_what_is_missing() -> None:
    assert edited("quiet a=1", delete_if_present=["foo", "a=2", "a=1"]) == "quiet"


def test_delete_matches_a_quoted_value_with_or_without_its_quotes() -> None:
    assert edited('a="x y" b', delete=['a="x y"']) == "b"
    kargs = KernelArgs.from_string('a="x y" b')
    kargs.delete("a=x y")
    assert str(kargs) == "b"


def test_replace_a_single_value_in_place() -> None:
    assert edited("a=1 quiet", replace=["a=2"]) == "a=2 quiet"
    assert edited("a=1 quiet", replace=["a"]) == "a quiet"


def test_replace_old_value_among_several() -> None:
    assert edited("c=a c=b", replace=["c=b=z"]) == "c=a c=z"
    with pytest.raises(KargsError, match=r"use --replace KEY=OLD=NEW"):
        edited("c=a c=b", replace=["c=z"])
    with pytest.raises(KargsError, match='no karg "c=x" to replace'):
        edited("c=a c=b", replace=["c=x=z"])


def test_edit_applies_delete_replace_append_in_rpm_ostrees_order() -> None:
    # The delete sees the original arguments, the append comes after the replace.
    assert edited("a=1 b=1", append=["a=3"], replace=["a=2"], delete=["b"]) == "a=2 a=3"


def test_one_option_value_may_hold_several_arguments() -> None:
    assert edited("quiet", append=['x=1 y="a b"']) == 'quiet x=1 y="a b"'


def test_validate_refuses_the_ostree_karg_and_empty_keys() -> None:
    with pytest.raises(KargsError, match='the "ostree" karg is written by ostree'):
        KargsEdit(append=["ostree=/x"]).validate()
    with pytest.raises(KargsError, match='invalid --delete "=x": it has no key'):
        KargsEdit(delete=["=x"]).validate()


def test_without_ostree_drops_only_libostrees_argument() -> None:
    kargs = KernelArgs.from_string("root=x ostree=/ostree/boot.1/debian/abc/0 quiet")
    assert kargs.without_ostree() == ["root=x", "quiet"]


def test_proc_cmdline_drops_what_the_bootloader_added(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text('BOOT_IMAGE=/vmlinuz root=x initrd=/i a="b c"\n')
    assert read_proc_cmdline(cmdline).to_list() == ["root=x", 'a="b c"']
