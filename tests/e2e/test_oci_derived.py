"""A derived image: `podman build` FROM an apt-ostree image, with `dpkg -i` of a package.

The real Debian base (test cache) is encapsulated into an OCI layout; podman
builds `FROM oci:...` a Containerfile whose RUN installs a small local .deb
with dpkg (no network), writes /etc and /var content and deletes a base file;
`podman push` writes the derived image to another layout. A sysroot deployed
from the base ref rebases to it: the package is in `status`/`db list`, /etc
went to /usr/etc, /var was left out and the deleted file is gone; a package
layered on top keeps the image as the origin.

podman runs with its own storage (overlay) and `--isolation chroot`: crun
cannot create containers under this machine's hybrid cgroup hierarchy.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.fixtures.aptrepo import DebSpec, build_deb
from tests.fixtures.debianbase import DebianSysroot
from tests.fixtures.ocitrees import ostree
from tests.fixtures.sysroot import apt_ostree, deployments_json

CONTAINERFILE = """\
FROM oci:{base}:1
COPY derived-hello_1.0_amd64.deb /tmp/
RUN mkdir -p /var/lib && ln -s ../../usr/share/dpkg/database /var/lib/dpkg \\
 && dpkg -i /tmp/derived-hello_1.0_amd64.deb \\
 && echo derived > /etc/derived.conf && mkdir -p /var/derived && touch /var/derived/x \\
 && rm /usr/share/base-files/motd
"""


def _run(cmd: list[str | Path]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_a_podman_derived_image_deploys_with_its_package_and_takes_layered_packages(
    debian_sysroot: DebianSysroot, layer_repo: object, tmp_path: Path
) -> None:
    base = tmp_path / "base"
    proc = apt_ostree(
        None, "compose", "container-encapsulate", "--repo", debian_sysroot.base.repo,
        debian_sysroot.base.checksum, f"oci:{base}:1", "--max-layers", "8",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    context = tmp_path / "context"
    build_deb(DebSpec("derived-hello", files={"usr/share/derived-hello/hello": "hello\n"}), context)
    (context / "Containerfile").write_text(CONTAINERFILE.format(base=base))
    # podman refuses a runroot path longer than 50 characters.
    runroot = Path(tempfile.mkdtemp(prefix="podman-", dir="/tmp"))
    podman = ["podman", "--root", str(tmp_path / "storage"), "--runroot", str(runroot),
              "--storage-driver", "overlay"]  # fmt: skip
    try:
        _run([*podman, "build", "--isolation", "chroot", "-t", "localhost/derived:1", context])
        _run([*podman, "push", "localhost/derived:1", f"oci:{tmp_path}/derived:1"])
    finally:
        subprocess.run([*podman, "system", "reset", "--force"], capture_output=True)
        shutil.rmtree(runroot, ignore_errors=True)

    ref = f"ostree-unverified-image:oci:{tmp_path}/derived:1"
    proc = apt_ostree(debian_sysroot.path, "rebase", ref)
    assert proc.returncode == 0, proc.stderr
    new = deployments_json(debian_sysroot.path)[0]
    assert new["container-image-reference"] == ref
    listed = apt_ostree(debian_sysroot.path, "db", "list", new["checksum"], "derived-hello")
    assert "derived-hello_1.0_amd64" in listed.stdout, listed.stdout + listed.stderr
    repo = f"--repo={debian_sysroot.path}/ostree/repo"
    assert ostree("cat", repo, new["checksum"], "/usr/etc/derived.conf") == "derived\n"
    assert ostree("cat", repo, new["checksum"], "/usr/share/derived-hello/hello") == "hello\n"
    var = subprocess.run(
        ["ostree", "ls", "-R", repo, new["checksum"], "/var"], capture_output=True, text=True
    )
    assert "derived" not in var.stdout
    motd = subprocess.run(
        ["ostree", "ls", repo, new["checksum"], "/usr/share/base-files/motd"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert motd.returncode != 0

    # Package layering on the image-based deployment, as on a ref.
    proc = apt_ostree(debian_sysroot.path, "install", "dep-top")
    assert proc.returncode == 0, proc.stderr
    layered = deployments_json(debian_sysroot.path)[0]
    assert layered["container-image-reference"] == ref
    assert layered["base-checksum"] == new["checksum"]
    assert layered["packages"] == ["dep-top"]
    listed = apt_ostree(debian_sysroot.path, "db", "list", layered["checksum"])
    assert "derived-hello_1.0_amd64" in listed.stdout and "dep-top_" in listed.stdout
