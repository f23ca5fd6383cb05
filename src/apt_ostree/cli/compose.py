"""`apt-ostree compose ...`: the build side. Runs in-process (no daemon)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from apt_ostree.cli import image
from apt_ostree.errors import AptOstreeError
from apt_ostree.reporter import Reporter


def register(sub: Any) -> None:
    compose = sub.add_parser("compose", help="build OSTree commits of Debian trees")
    csub = compose.add_subparsers(dest="compose_command", metavar="COMMAND", required=True)

    tree = csub.add_parser("tree", help="compose a commit from a treefile")
    tree.add_argument("treefile", type=Path)
    tree.add_argument(
        "--repo", type=Path, required=True, help="OSTree repository (created if missing)"
    )
    tree.add_argument("--cachedir", type=Path, help="cache for APT indexes and .debs")
    tree.add_argument("--workdir", type=Path, help="where the tree is built (default /var/tmp)")
    tree.add_argument("--dry-run", action="store_true", help="resolve and print the package list")
    tree.add_argument("--print-only", action="store_true", help="print the merged treefile")
    tree.add_argument("--force-nocache", action="store_true", help="commit even if nothing changed")
    tree.add_argument(
        "--add-metadata-string", action="append", default=[], metavar="KEY=VALUE",
        help="add a string to the commit metadata (version=V sets the version)",
    )  # fmt: skip
    tree.add_argument("--write-commitid-to", type=Path, metavar="FILE")
    tree.add_argument(
        "--touch-if-changed", type=Path, metavar="FILE",
        help="update the modification time of FILE (creating it) if a new commit was written",
    )  # fmt: skip
    add_signing_arguments(tree)
    tree.add_argument(
        "--ex-write-lockfile-to", type=Path, metavar="FILE",
        help="write the resolved package set (versions, .deb checksums) to a JSON lockfile",
    )  # fmt: skip
    tree.add_argument(
        "--ex-lockfile", type=Path, action="append", default=[], metavar="FILE",
        help="install the locked versions of the packages in FILE (repeatable, later wins)",
    )  # fmt: skip
    tree.add_argument(
        "--ex-lockfile-strict", action="store_true",
        help="install no package that the lockfiles do not name",
    )  # fmt: skip
    tree.set_defaults(func=cmd_tree)

    post = csub.add_parser("postprocess", help="convert a Debian tree to the OSTree layout")
    post.add_argument("rootfs", type=Path)
    post.add_argument("treefile", type=Path, nargs="?", help="takes machineid-compat, ...")
    post.set_defaults(func=cmd_postprocess)

    commit = csub.add_parser("commit", help="commit a postprocessed tree")
    commit.add_argument("rootfs", type=Path)
    commit.add_argument("--repo", type=Path, required=True)
    commit.add_argument("--ref", required=True)
    commit.add_argument("--add-metadata-string", action="append", default=[], metavar="KEY=VALUE")
    commit.add_argument("--write-commitid-to", type=Path, metavar="FILE")
    add_signing_arguments(commit)
    commit.set_defaults(func=cmd_commit)

    register_publish(csub)
    register_sysroot(csub)
    register_disk_image(csub)
    image.register(csub)


def _metadata_strings(pairs: list[str]) -> dict[str, str]:
    metadata = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise AptOstreeError(f"--add-metadata-string {pair!r}: expected KEY=VALUE")
        metadata[key] = value
    return metadata


def add_signing_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpg-sign", metavar="KEYID",
                        help="sign the commit and the summary with this GPG key")  # fmt: skip
    parser.add_argument("--gpg-homedir", type=Path, metavar="DIR",
                        help="GnuPG home holding the secret key (default: gpg's own)")  # fmt: skip


def signer_of(args: argparse.Namespace) -> Any:
    """The GpgSigner that `--gpg-sign`/`--gpg-homedir` name, or None."""
    from apt_ostree.ostree.signing import GpgSigner

    if args.gpg_sign is None:
        if args.gpg_homedir is not None:
            raise AptOstreeError("--gpg-homedir needs --gpg-sign KEYID")
        return None
    return GpgSigner(args.gpg_sign, args.gpg_homedir)


def _reporter(args: argparse.Namespace) -> Reporter:
    return Reporter(quiet=args.quiet)


def cmd_tree(args: argparse.Namespace) -> int:
    from apt_ostree.compose.tree import ComposeOptions, compose_tree
    from apt_ostree.compose.treefile import load_treefile

    metadata = _metadata_strings(args.add_metadata_string)
    treefile = load_treefile(args.treefile)
    if args.print_only:
        json.dump(treefile.merged, sys.stdout, indent=2, sort_keys=True)
        print()
        return 0
    reporter = _reporter(args)
    options = ComposeOptions(
        repo=args.repo,
        cachedir=args.cachedir,
        workdir=args.workdir,
        dry_run=args.dry_run,
        force_nocache=args.force_nocache,
        metadata=metadata,
        signer=signer_of(args),
        lockfiles=args.ex_lockfile,
        lockfile_strict=args.ex_lockfile_strict,
        write_lockfile_to=args.ex_write_lockfile_to,
    )
    result = compose_tree(treefile, options, reporter)
    if args.dry_run:
        for p in result.packages:
            print(f"{p.name} {p.version} {p.arch}")
        return 0
    if result.commit is None:
        print("No apparent changes since previous commit")
        return 0
    commit = result.commit
    if args.write_commitid_to:
        args.write_commitid_to.write_text(commit.checksum)
    if args.touch_if_changed:
        args.touch_if_changed.touch()
    print(f"Wrote commit: {commit.checksum}")
    if commit.version:
        print(f"Version: {commit.version}")
    print(f"Packages: {len(result.packages)}")
    return 0


def cmd_postprocess(args: argparse.Namespace) -> int:
    from apt_ostree.compose.postprocess import PostprocessOptions, postprocess_tree
    from apt_ostree.compose.treefile import load_treefile

    options = PostprocessOptions()
    if args.treefile is not None:
        tf = load_treefile(args.treefile)
        options = PostprocessOptions(
            tf.machineid_compat, tf.tmp_is_dir, tf.initramfs_args, tf.source_date_epoch
        )
    result = postprocess_tree(args.rootfs, options, _reporter(args))
    kernel = result.kernel_version or "none (not bootable)"
    print(f"Postprocessed {args.rootfs}: kernel {kernel}")
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    from apt_ostree.compose.commit import CommitRequest, commit_tree

    metadata: dict[str, Any] = dict(_metadata_strings(args.add_metadata_string))
    version = metadata.pop("version", None)
    result = commit_tree(
        CommitRequest(
            repo=args.repo,
            ref=args.ref,
            rootfs=args.rootfs,
            metadata=metadata,
            version=version,
            signer=signer_of(args),
        )
    )
    if args.write_commitid_to:
        args.write_commitid_to.write_text(result.checksum)
    print(f"Wrote commit: {result.checksum}")
    return 0


def register_sysroot(csub: Any) -> None:
    p = csub.add_parser("sysroot", help="make an OSTree sysroot with one deployment")
    p.add_argument("path", type=Path, metavar="DIR")
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--ref", required=True)
    p.add_argument("--revision", help="deploy this commit of REF instead of its tip")
    p.add_argument("--os", dest="osname", default="debian", help="osname (default debian)")
    p.add_argument("--karg", action="append", default=[], help="kernel argument (repeatable)")
    p.add_argument("--remote", metavar="NAME=URL", help="origin remote for upgrades")
    p.add_argument("--remote-gpg-key", action="append", default=[], type=Path, metavar="FILE",
                   help="GPG key(s) to verify the remote's commits")  # fmt: skip
    p.add_argument("--no-gpg-verify", action="store_true", help="do not verify the remote")
    p.set_defaults(func=cmd_sysroot)


def _remote_arg(value: str | None) -> tuple[str | None, str | None]:
    """`--remote NAME=URL` -> (NAME, URL), or (None, None) when not given."""
    if not value:
        return None, None
    remote, sep, url = value.partition("=")
    if not sep or not remote or not url:
        raise AptOstreeError(f"--remote {value!r}: expected NAME=URL")
    return remote, url


def cmd_sysroot(args: argparse.Namespace) -> int:
    from apt_ostree.compose.sysroot import SysrootRequest, make_sysroot

    remote, remote_url = _remote_arg(args.remote)
    checksum = make_sysroot(
        SysrootRequest(
            path=args.path,
            repo=args.repo,
            ref=args.ref,
            revision=args.revision,
            osname=args.osname,
            kargs=args.karg,
            remote=remote,
            remote_url=remote_url,
            gpg_verify=not args.no_gpg_verify,
            gpg_keys=args.remote_gpg_key,
        ),
        _reporter(args),
    )
    print(f"Deployed {checksum} in {args.path}")
    return 0


def register_disk_image(csub: Any) -> None:
    p = csub.add_parser("disk-image", help="make a bootable GPT disk image of a commit")
    p.add_argument("output", type=Path, metavar="OUT")
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--ref", required=True)
    p.add_argument("--size", default="4G", help="disk size, e.g. 4G (default 4G)")
    p.add_argument("--format", choices=["raw", "qcow2"], default="raw")
    p.add_argument("--firmware", choices=["bios", "uefi", "both"], default="bios")
    p.add_argument("--karg", action="append", default=[],
                   help="kernel argument, e.g. console=ttyS0 for VMs (repeatable)")  # fmt: skip
    # Checked by compose.diskimage (ROOT_FILESYSTEMS): one error line, no gi import here.
    p.add_argument("--root-fs", default="ext4", metavar="FS",
                   help="filesystem of the root partition: ext4 (default) or xfs")  # fmt: skip
    p.add_argument("--os", dest="osname", default="debian", help="osname (default debian)")
    p.add_argument("--remote", metavar="NAME=URL", help="origin remote for upgrades")
    p.add_argument("--no-gpg-verify", action="store_true", help="do not verify the remote")
    p.set_defaults(func=cmd_disk_image)


def cmd_disk_image(args: argparse.Namespace) -> int:
    from apt_ostree.compose.diskimage import DiskImageRequest, build_disk_image, parse_size

    remote, remote_url = _remote_arg(args.remote)
    image = build_disk_image(
        DiskImageRequest(
            output=args.output,
            repo=args.repo,
            ref=args.ref,
            size=parse_size(args.size),
            format=args.format,
            firmware=args.firmware,
            kargs=args.karg,
            root_fs=args.root_fs,
            osname=args.osname,
            remote=remote,
            remote_url=remote_url,
            gpg_verify=not args.no_gpg_verify,
        ),
        _reporter(args),
    )
    print(f"Wrote {image.path} ({args.format}, {args.firmware}) with {image.checksum}")
    return 0


def register_publish(csub: Any) -> None:
    p = csub.add_parser("publish", help="static deltas and a (signed) summary: ready to serve")
    p.add_argument("refs", nargs="+", metavar="REF")
    p.add_argument("--repo", type=Path, required=True, help="an archive repository")
    p.add_argument("--delta-depth", type=int, default=1, metavar="N",
                   help="deltas from the N previous commits of each ref (default 1)")  # fmt: skip
    p.add_argument("--from-scratch", action="store_true",
                   help="also a delta from nothing to each tip, for first pulls")  # fmt: skip
    p.add_argument("--min-fallback-size", type=int, default=4, metavar="MB",
                   help="larger new files are fetched as plain objects (default 4)")  # fmt: skip
    add_signing_arguments(p)
    p.set_defaults(func=cmd_publish)


def cmd_publish(args: argparse.Namespace) -> int:
    from apt_ostree.compose.publish import PublishRequest, publish

    result = publish(
        PublishRequest(
            repo=args.repo,
            refs=args.refs,
            delta_depth=args.delta_depth,
            from_scratch=args.from_scratch,
            min_fallback_size=args.min_fallback_size,
            signer=signer_of(args),
        ),
        _reporter(args),
    )
    for name in result.generated:
        print(f"Generated static delta {name}")
    if result.existing:
        print(f"{len(result.existing)} static delta(s) already there")
    print("Wrote signed summary" if result.signed else "Wrote summary (not signed)")
    return 0
