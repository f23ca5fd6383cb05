"""How components (packages) are packed into layers, and image references."""

from __future__ import annotations

import pytest

from apt_ostree.compose.chunking import DPKG_STATUS, Component, dpkg_path_in_commit, pack
from apt_ostree.oci.imgref import parse_image_reference
from apt_ostree.oci.layout import OciError

LINKS = {"bin": "usr/bin", "lib": "usr/lib"}


def components(sizes: dict[str, int]) -> list[Component]:
    return [Component(name, size, (f"{name}-object",)) for name, size in sizes.items()]


def names(groups: list[list[Component]]) -> list[list[str]]:
    return [sorted(c.name for c in group) for group in groups]


def test_few_components_get_a_layer_each_largest_first() -> None:
    groups = pack(components({"a": 10, "b": 30, "c": 20}), 5)
    assert names(groups) == [["b"], ["c"], ["a"]]


def test_many_components_fit_the_budget_with_the_largest_alone() -> None:
    sizes = {f"small-{i:02}": 100 + i for i in range(40)}
    sizes.update({"huge": 10_000_000, "big": 5_000_000, "medium": 1_000_000})
    groups = names(pack(components(sizes), 6))
    assert len(groups) == 6
    assert groups[:3] == [["huge"], ["big"], ["medium"]]
    packed = [n for g in groups for n in g]
    assert sorted(packed) == sorted(sizes)  # each exactly once
    assert all(groups)


def test_dpkg_status_keeps_a_layer_of_its_own_however_small() -> None:
    sizes = {f"small-{i:02}": 100 for i in range(20)}
    sizes.update({DPKG_STATUS: 1, "big": 1_000_000})
    groups = names(pack(components(sizes), 5))
    assert len(groups) == 5
    assert [DPKG_STATUS] in groups and ["big"] in groups


def test_packing_is_the_same_for_the_same_input_in_any_order() -> None:
    sizes = {f"p{i}": (i * 7919) % 1000 for i in range(50)}
    forward = pack(components(sizes), 10)
    backward = pack(list(reversed(components(sizes))), 10)
    assert names(forward) == names(backward)


def test_a_previous_build_keeps_its_groups_minus_removed_plus_new_in_one_layer() -> None:
    prior = [["a"], ["b", "c"], ["d", "gone"]]
    current = components({"a": 1, "b": 2, "c": 3, "d": 4, "new1": 5, "new2": 6})
    assert names(pack(current, 10, prior)) == [["a"], ["b", "c"], ["d"], ["new1", "new2"]]


def test_new_packages_join_the_last_layer_when_the_budget_is_spent() -> None:
    prior = [["a"], ["b"], ["c"]]
    current = components({"a": 1, "b": 2, "c": 3, "new": 4})
    assert names(pack(current, 3, prior)) == [["a"], ["b"], ["c", "new"]]


def test_a_previous_build_over_the_budget_is_packed_afresh() -> None:
    prior = [["a"], ["b"], ["c"], ["d"]]
    current = components({"a": 1, "b": 2, "c": 3, "d": 4})
    assert names(pack(current, 2, prior)) == [["d"], ["a", "b", "c"]]


def test_no_package_layers_leaves_everything_to_layer_zero() -> None:
    assert pack(components({"a": 1}), 0) == []


@pytest.mark.parametrize(
    ("listed", "in_commit"),
    [
        ("/etc/foo.conf", "usr/etc/foo.conf"),
        ("/etc", "usr/etc"),
        ("/bin/dash", "usr/bin/dash"),
        ("/lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/libc.so.6"),
        ("/usr/bin/env", "usr/bin/env"),
        ("/boot/vmlinuz-6.1.0-18-amd64", "usr/lib/modules/6.1.0-18-amd64/vmlinuz"),
        ("/boot/System.map-6.1.0-18-amd64", "usr/lib/modules/6.1.0-18-amd64/System.map"),
    ],
)
def test_dpkg_paths_map_to_where_the_commit_holds_them(listed: str, in_commit: str) -> None:
    assert dpkg_path_in_commit(listed, LINKS) == in_commit


def test_image_references() -> None:
    ref = parse_image_reference("oci:/srv/images/debian:stable")
    assert (ref.transport, str(ref.path), ref.tag) == ("oci", "/srv/images/debian", "stable")
    assert parse_image_reference("oci-archive:/tmp/x.tar").tag is None
    registry = parse_image_reference("docker://127.0.0.1:5000/debian:12")
    assert str(registry) == "docker://127.0.0.1:5000/debian:12"
    for bad in ("debian:12", "docker:debian", "oci:", "oci:/x:", "ftp://x"):
        with pytest.raises(OciError):
            parse_image_reference(bad)
