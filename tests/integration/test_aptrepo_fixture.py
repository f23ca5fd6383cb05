"""The local APT repository fixture: what later tests rely on it to be."""

from __future__ import annotations

import gzip
import subprocess
import urllib.request
from pathlib import Path

import apt_pkg
import pytest

from tests.fixtures.aptrepo import (
    FIXTURE_PACKAGES,
    KERNEL_VERSION,
    AptRepo,
    DebSpec,
    build_deb,
)


def _paragraphs(path: Path) -> list[dict[str, str]]:
    # TagFile is a plain deb822 parser: it needs no APT configuration.
    with apt_pkg.TagFile(str(path)) as tags:
        return [dict(section) for section in tags]


def _packages_file(repo: AptRepo) -> Path:
    return repo.path / "dists" / repo.suite / "main" / f"binary-{repo.arch}" / "Packages"


def _deb(repo: AptRepo, name: str) -> Path:
    return next(deb for deb in repo.debs if deb.name.startswith(f"{name}_"))


def _deb_contents(deb: Path) -> list[str]:
    listing = subprocess.run(
        ["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    return listing.splitlines()


def test_inrelease_verifies_with_gpgv_against_the_keyring(apt_repo: AptRepo) -> None:
    assert apt_repo.keyring is not None
    inrelease = apt_repo.path / "dists" / "fixture" / "InRelease"
    subprocess.run(["gpgv", "--keyring", str(apt_repo.keyring), str(inrelease)], check=True)


def test_release_gpg_is_a_detached_signature_of_release(apt_repo: AptRepo) -> None:
    assert apt_repo.keyring is not None
    dist = apt_repo.path / "dists" / "fixture"
    subprocess.run(
        [
            "gpgv",
            "--keyring",
            str(apt_repo.keyring),
            str(dist / "Release.gpg"),
            str(dist / "Release"),
        ],
        check=True,
    )


def test_inrelease_does_not_verify_with_another_key(apt_repo: AptRepo, wrong_keyring: Path) -> None:
    inrelease = apt_repo.path / "dists" / "fixture" / "InRelease"
    proc = subprocess.run(
        ["gpgv", "--keyring", str(wrong_keyring), str(inrelease)], capture_output=True
    )
    assert proc.returncode != 0


def test_release_describes_suite_components_and_architecture(apt_repo: AptRepo) -> None:
    [release] = _paragraphs(apt_repo.path / "dists" / "fixture" / "Release")
    assert release["Suite"] == "fixture"
    assert release["Codename"] == "fixture"
    assert release["Components"] == "main"
    assert release["Architectures"] == "amd64"
    assert "main/binary-amd64/Packages.gz" in release["SHA256"]


def test_packages_lists_every_spec(apt_repo: AptRepo) -> None:
    listed = {
        (p["Package"], p["Version"], p["Architecture"])
        for p in _paragraphs(_packages_file(apt_repo))
    }
    assert listed == {(spec.name, spec.version, spec.arch) for spec in FIXTURE_PACKAGES}


def test_packages_gz_matches_packages(apt_repo: AptRepo) -> None:
    packages = _packages_file(apt_repo)
    assert gzip.decompress(packages.with_name("Packages.gz").read_bytes()) == packages.read_bytes()


def test_packages_carry_relationships_and_flags(apt_repo: AptRepo) -> None:
    by_name = {p["Package"]: p for p in _paragraphs(_packages_file(apt_repo))}
    assert by_name["pkg-a"]["Depends"] == "pkg-b (>= 1.0)"
    assert by_name["pkg-c"]["Conflicts"] == "pkg-a"
    assert by_name["fixture-essential"]["Essential"] == "yes"
    assert by_name[f"linux-image-{KERNEL_VERSION}"]["Section"] == "kernel"
    assert by_name["pkg-a"]["Filename"] == "pool/main/pkg-a_1.0_amd64.deb"


def test_fake_kernel_ships_vmlinuz_and_modules(apt_repo: AptRepo) -> None:
    contents = _deb_contents(_deb(apt_repo, f"linux-image-{KERNEL_VERSION}"))
    paths = {line.split()[-1] for line in contents}
    assert f"./boot/vmlinuz-{KERNEL_VERSION}" in paths
    assert f"./usr/lib/modules/{KERNEL_VERSION}/modules.dep" in paths
    assert f"./usr/lib/modules/{KERNEL_VERSION}/kernel/drivers/dummy.ko" in paths


def test_deb_files_belong_to_root(apt_repo: AptRepo) -> None:
    owners = {line.split()[1] for line in _deb_contents(_deb(apt_repo, "pkg-a"))}
    assert owners == {"root/root"}


def test_maintainer_scripts_are_executable(apt_repo: AptRepo) -> None:
    control = subprocess.run(
        f"dpkg-deb --ctrl-tarfile {_deb(apt_repo, 'hello-fixture')} | tar -tvf -",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    [postinst] = [line for line in control.splitlines() if line.endswith("./postinst")]
    assert postinst.startswith("-rwxr-xr-x")


def test_files_under_etc_are_conffiles_by_default(tmp_path: Path) -> None:
    spec = DebSpec("conf-test", files={"etc/conf-test.conf": "x\n", "usr/share/conf-test": "y\n"})
    deb = build_deb(spec, tmp_path)
    conffiles = subprocess.run(
        ["dpkg-deb", "--info", str(deb), "conffiles"], capture_output=True, text=True, check=True
    ).stdout
    assert conffiles.split() == ["/etc/conf-test.conf"]


def test_unsigned_repo_has_no_signatures(unsigned_apt_repo: AptRepo) -> None:
    dist = unsigned_apt_repo.path / "dists" / "fixture"
    assert (dist / "Release").is_file()
    assert not (dist / "InRelease").exists()
    assert not (dist / "Release.gpg").exists()
    assert "Signed-By" not in unsigned_apt_repo.sources_stanza()


def test_sources_stanza_names_the_keyring(apt_repo: AptRepo, wrong_keyring: Path) -> None:
    stanza = apt_repo.sources_stanza()
    assert f"URIs: {apt_repo.uri}" in stanza
    assert f"Signed-By: {apt_repo.keyring}" in stanza
    assert "Suites: fixture" in stanza
    assert f"Signed-By: {wrong_keyring}" in apt_repo.sources_stanza(signed_by=wrong_keyring)
    assert "URIs: http://127.0.0.1:9/" in apt_repo.sources_stanza("http://127.0.0.1:9/")


def test_http_repo_serves_the_same_files(apt_repo: AptRepo, http_apt_repo: AptRepo) -> None:
    assert http_apt_repo.uri.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(f"{http_apt_repo.uri}dists/fixture/InRelease") as response:
        served = response.read()
    assert served == (apt_repo.path / "dists" / "fixture" / "InRelease").read_bytes()


@pytest.mark.parametrize(
    "version,filename", [("1.0", "x_1.0_amd64.deb"), ("2:3.4-1", "x_3.4-1_amd64.deb")]
)
def test_deb_file_names_drop_the_epoch(version: str, filename: str) -> None:
    assert DebSpec("x", version).filename == filename
