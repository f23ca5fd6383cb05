"""`apt-ostree compose container-encapsulate` and `compose image`: OCI images."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from apt_ostree.errors import EXIT_UNCHANGED, AptOstreeError
from apt_ostree.reporter import Reporter


def _label(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{value!r}: expected KEY=VALUE")
    return key, val


def _image_options(p: Any) -> None:
    """The options that `container-encapsulate` and `image` share (rpm-ostree's names)."""
    p.add_argument("-l", "--label", action="append", default=[], type=_label,
                   metavar="KEY=VALUE", help="add a label to the image (repeatable)")  # fmt: skip
    p.add_argument("--image-config", type=Path, metavar="FILE",
                   help="JSON file: the image's `config` (Env, Cmd, Labels, ...)")  # fmt: skip
    p.add_argument("--max-layers", type=int, default=64, metavar="N",
                   help="at most N layers, layer 0 included (default 64)")  # fmt: skip
    p.add_argument("--format-version", type=int, default=1, choices=[1, 2],
                   help="1: no directory entries in the package layers; 2: with them")  # fmt: skip
    p.add_argument("--authfile", type=Path, help="registry credentials (containers-auth.json)")


def register(csub: Any) -> None:
    p = csub.add_parser(
        "container-encapsulate", help="write a commit as a bootable OCI image (ostree-ext format)"
    )
    p.add_argument("--repo", type=Path, required=True, help="OSTree repository")
    p.add_argument("ref", metavar="REF", help="ref or commit checksum")
    p.add_argument(
        "imgref", metavar="IMGREF", help="oci:DIR[:TAG], oci-archive:FILE[:TAG], docker://HOST/IMG"
    )
    _image_options(p)
    p.add_argument("--cmd", action="append", metavar="ARG",
                   help="the image's default command, one argument each (repeatable)")  # fmt: skip
    p.add_argument("--arch", help="Debian architecture of the image (default: the commit's)")
    p.add_argument("--previous-build-manifest", metavar="FILE|IMGREF",
                   help="keep the layer split of this earlier build (JSON or image)")  # fmt: skip
    p.set_defaults(func=cmd_encapsulate)

    img = csub.add_parser("image", help="compose a treefile straight into an OCI image")
    img.add_argument("treefile", type=Path, metavar="MANIFEST")
    img.add_argument(
        "output", metavar="OUTPUT", help="oci directory, oci archive or registry image"
    )
    img.add_argument("--format", choices=["ociarchive", "oci", "registry"], default="ociarchive",
                     help="what OUTPUT is (default ociarchive)")  # fmt: skip
    img.add_argument("--cachedir", type=Path, help="cache: APT indexes, .debs and the OSTree repo")
    img.add_argument("--repo", type=Path, help="OSTree repo to use (default CACHEDIR/repo)")
    img.add_argument("--initialize", action="store_true",
                     help="create OUTPUT if it does not exist (otherwise it must)")  # fmt: skip
    img.add_argument("--touch-if-changed", type=Path, metavar="FILE",
                     help="touch FILE when a new image was written")  # fmt: skip
    img.add_argument("--unchanged-exit-77", action="store_true", help="exit 77 when unchanged")
    _image_options(img)
    img.set_defaults(func=cmd_image)


def cmd_encapsulate(args: argparse.Namespace) -> int:
    from apt_ostree.compose.encapsulate import EncapsulateRequest, encapsulate

    result = encapsulate(
        EncapsulateRequest(
            repo=args.repo,
            ref=args.ref,
            imgref=args.imgref,
            labels=dict(args.label),
            image_config=args.image_config,
            cmd=args.cmd,
            max_layers=args.max_layers,
            format_version=args.format_version,
            previous_build_manifest=args.previous_build_manifest,
            arch=args.arch,
            authfile=args.authfile,
        ),
        Reporter(quiet=args.quiet),
    )
    print(f"Pushed digest: {result.digest}")
    return 0


def cmd_image(args: argparse.Namespace) -> int:
    from apt_ostree.compose.image import ImageRequest, compose_image

    result = compose_image(
        ImageRequest(
            treefile=args.treefile,
            output=args.output,
            format=args.format,
            cachedir=args.cachedir,
            repo=args.repo,
            initialize=args.initialize,
            labels=dict(args.label),
            image_config=args.image_config,
            max_layers=args.max_layers,
            format_version=args.format_version,
            authfile=args.authfile,
        ),
        Reporter(quiet=args.quiet),
    )
    if result.digest is None:
        print("No changes")
        return EXIT_UNCHANGED if args.unchanged_exit_77 else 0
    if args.touch_if_changed:
        try:
            args.touch_if_changed.touch()
        except OSError as e:
            raise AptOstreeError(f"--touch-if-changed {args.touch_if_changed}: {e}") from e
    print(f"Wrote commit: {result.commit}")
    print(f"Pushed digest: {result.digest}")
    return 0
