"""`usroverlay` (also `unlock`, as rpm-ostree): a writable overlay on the booted /usr.

As rpm-ostree's, this command runs `ostree admin unlock`: libostree mounts the
overlay in the caller's mount namespace (apt-ostreed's service may have its own)
and takes the sysroot lock while it records the state (docs/cli.md, "usroverlay").
"""

from __future__ import annotations

import argparse
import subprocess
from typing import Any

from apt_ostree.client import BOOTED_FLAG
from apt_ostree.errors import AptOstreeError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "usroverlay", help="make /usr of the booted deployment writable (an overlay)",
        description="Mount a writable overlayfs on /usr of the booted deployment. Changes"
        " are discarded at the next boot; with --hotfix they are kept for this deployment"
        " (libostree first makes a copy of it to roll back to); with --transient the"
        " overlay is mounted read-only (remount it read-write to change /usr)."
        " `apt-ostree status` shows the state as Unlocked.",
    )  # fmt: skip
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--hotfix", action="store_true", help="keep the changes across reboots")
    mode.add_argument("--transient", action="store_true", help="mount the overlay read-only")
    p.set_defaults(func=cmd_usroverlay)


def cmd_usroverlay(args: argparse.Namespace) -> int:
    if args.sysroot is None and not BOOTED_FLAG.exists():
        raise AptOstreeError("this system is not booted from an OSTree deployment")
    cmd = ["ostree", "admin", "unlock"]
    if args.sysroot is not None:
        cmd.append(f"--sysroot={args.sysroot}")
    cmd += ["--hotfix"] * args.hotfix + ["--transient"] * args.transient
    try:
        proc = subprocess.run(
            cmd, stdout=subprocess.DEVNULL if args.quiet else None, stderr=subprocess.PIPE,
            text=True, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        raise AptOstreeError("usroverlay needs ostree (the ostree package)") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        message = lines[-1].removeprefix("error: ") if lines else f"exit {proc.returncode}"
        raise AptOstreeError(f"cannot unlock /usr: {message}")
    return 0
