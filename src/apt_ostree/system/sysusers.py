"""System users of a new deployment, added to its merged /etc before it is written.

ostree's /etc merge keeps the machine's own /etc/passwd and /etc/group once they
were edited, so the users that a new base commit brings are not in them. The base
and the layered packages list theirs in /usr/lib/sysusers.d with their ids
(compose/accounts.py, system/layering.py); the deployment's own systemd-sysusers
adds those missing. On a booted system the deployment is staged and its /etc is
merged at shutdown: systemd-sysusers.service does the same at the next boot.
"""

from __future__ import annotations

from pathlib import Path

from apt_ostree.errors import AptOstreeError, CommandError
from apt_ostree.sandbox import run_in_tree
from apt_ostree.treefs import Tree

# Measured: it writes the account files by rename and gives each copy the owner
# of the file it replaces (root:shadow for shadow).
SYSUSERS_CAPS = ("CAP_CHOWN",)
SYSUSERS = "usr/bin/systemd-sysusers"


def add_missing_accounts(deployment: Path) -> None:
    """Run the deployment's systemd-sysusers in the sandbox, over its /etc."""
    with Tree(deployment) as tree:
        if tree.lstat(SYSUSERS) is None or not tree.listdir("usr/lib/sysusers.d"):
            return
    try:
        run_in_tree(deployment, [f"/{SYSUSERS}"], what="systemd-sysusers", caps=SYSUSERS_CAPS)
    except CommandError as e:
        raise AptOstreeError(
            f"cannot add the new deployment's system users to its /etc: {e}\n{e.output.strip()}"
        ) from e
