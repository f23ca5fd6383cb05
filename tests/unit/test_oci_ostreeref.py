"""rpm-ostree's image references and ostree-ext's ref escaping."""

from __future__ import annotations

import pytest

from apt_ostree.oci.ostreeref import (
    ImageRefError,
    blob_ref,
    escape_for_ref,
    image_ref,
    parse_image_reference,
)
from apt_ostree.ostree.repo import validate_ref


@pytest.mark.parametrize(
    ("text", "signed", "transport", "name", "skopeo"),
    [
        ("ostree-unverified-registry:quay.io/os/debian:12", False, "registry",
         "quay.io/os/debian:12", "docker://quay.io/os/debian:12"),
        ("ostree-unverified-image:oci:/mnt/images/os:v2", False, "oci", "/mnt/images/os:v2",
         "oci:/mnt/images/os:v2"),
        ("ostree-unverified-image:oci-archive:/tmp/os.ociarchive", False, "oci-archive",
         "/tmp/os.ociarchive", "oci-archive:/tmp/os.ociarchive"),
        ("ostree-unverified-image:docker://127.0.0.1:5000/os:1", False, "registry",
         "127.0.0.1:5000/os:1", "docker://127.0.0.1:5000/os:1"),
        ("ostree-image-signed:registry:quay.io/os@sha256:" + "a" * 64, True, "registry",
         "quay.io/os@sha256:" + "a" * 64, "docker://quay.io/os@sha256:" + "a" * 64),
    ],
)  # fmt: skip
def test_references_parse_to_skopeo_references(
    text: str, signed: bool, transport: str, name: str, skopeo: str
) -> None:
    ref = parse_image_reference(text)
    assert (ref.signed, ref.transport, ref.name, ref.skopeo_ref) == (
        signed,
        transport,
        name,
        skopeo,
    )


def test_a_registry_image_given_as_docker_is_written_back_the_rpm_ostree_way() -> None:
    ref = parse_image_reference("ostree-unverified-image:docker://quay.io/os:1")
    assert str(ref) == "ostree-unverified-registry:quay.io/os:1"
    text = "ostree-unverified-image:oci:/srv/os:1"
    assert str(parse_image_reference(text)) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("quay.io/os:1", "expected ostree-unverified-registry:NAME"),
        ("ostree-unverified-image:oci:relative", "must be absolute"),
        ("ostree-unverified-image:ftp:/x", 'unknown transport "ftp"'),
        ("ostree-unverified-image:/x", "expected TRANSPORT:NAME"),
        ("ostree-unverified-registry:", "expected a registry image name"),
        ("ostree-remote-registry:fedora:quay.io/os", "not supported"),
    ],
)
def test_bad_references_are_refused_with_one_line(text: str, message: str) -> None:
    with pytest.raises(ImageRefError) as e:
        parse_image_reference(text)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_refs_are_escaped_as_ostree_ext_does() -> None:
    digest = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
    assert blob_ref(digest) == (
        "ostree/container/blob/"
        "sha256_3A_2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
    )
    assert escape_for_ref("a_b/c//d/") == "a__b/c/_2F_d_2F_"
    ref = image_ref(parse_image_reference("ostree-unverified-registry:127.0.0.1:5000/os/x:v1"))
    assert ref == "ostree/container/image/registry_3A_127_2E_0_2E_0_2E_1_3A_5000/os/x_3A_v1"
    assert validate_ref(ref) is None
