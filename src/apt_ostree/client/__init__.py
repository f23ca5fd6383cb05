"""What the CLI uses to reach the system: one interface (`Client`), two ways.

- `client.dbus.DaemonClient`: apt-ostreed over D-Bus, on a booted system (or a
  daemon at `$APT_OSTREE_BUS_ADDRESS`, as the tests and benchmarks use);
- `client.local.LocalClient`: the same calls in-process, for `--sysroot PATH`.

Both return the same plain data (status documents, results of changes), so the
CLI prints the same text and JSON and exits with the same codes either way.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from apt_ostree.errors import AptOstreeError
from apt_ostree.reporter import Reporter
from apt_ostree.requests import LocalPackage, Request, RequestError, open_local_packages

BUS_ADDRESS_ENV = "APT_OSTREE_BUS_ADDRESS"
BOOTED_FLAG = Path("/run/ostree-booted")

__all__ = [
    "Client",
    "LocalPackage",
    "Request",
    "RequestError",
    "open_client",
    "open_local_packages",
]


class Client(ABC):
    """The calls of the CLI. Reads return JSON-like data; every change is one
    `transact(Request)` that returns its result document."""

    @property
    @abstractmethod
    def path(self) -> Path:
        """The sysroot served (the daemon's) or opened (in-process)."""

    @property
    @abstractmethod
    def booted(self) -> bool:
        """Whether that sysroot is the running system."""

    @abstractmethod
    def status(self) -> dict[str, Any]:
        """The document `status --json` prints."""

    @abstractmethod
    def kernel_args(
        self, osname: str | None, *, index: int | None, import_proc_cmdline: bool
    ) -> str: ...

    @abstractmethod
    def search(self, osname: str | None, terms: list[str], reporter: Reporter) -> list[Any]: ...

    @abstractmethod
    def db_list(self, args: list[str], repo: Path | None) -> list[dict[str, Any]]: ...

    @abstractmethod
    def db_diff(
        self,
        from_rev: str | None,
        to_rev: str | None,
        *,
        base: bool,
        repo: Path | None,
        changelogs: bool = False,
    ) -> dict[str, Any]:
        """`changelogs`: also the Debian changelog entries of each upgrade."""

    @abstractmethod
    def db_version(self, revs: list[str], repo: Path | None) -> list[dict[str, Any]]: ...

    def history(self, osnames: list[str]) -> list[dict[str, Any]]:
        """`ex history`: the machine's own records, readable by anyone (history.py);
        the same files whichever path serves the sysroot."""
        from apt_ostree.history import read_history

        return read_history(self.path, osnames)

    @abstractmethod
    def transact(self, request: Request, reporter: Reporter) -> dict[str, Any]:
        """Make the change `request` asks for; its result document."""

    @abstractmethod
    def cancel(self) -> str | None:
        """Cancel the active transaction; what it was, or None when there is none."""

    @abstractmethod
    def reload(self) -> None: ...

    # -- the same on both paths ---------------------------------------------------

    def require_booted_for_reboot(self) -> None:
        """`--reboot` only makes sense for the running system: fail before any change."""
        if not self.booted:
            raise AptOstreeError(
                f"--reboot needs the booted system; {self.path} is an offline sysroot"
            )

    def reboot(self) -> None:
        """Ask systemd to reboot into the new default deployment (as the caller:
        logind decides whether it may)."""
        from apt_ostree.run import run

        run(["systemctl", "reboot"], capture=False, what="systemctl reboot")

    # Remotes are repository configuration, not deployments: they are changed
    # in-process on both paths, under the sysroot lock (see docs/dbus.md).

    def remote_add(self, name: str, url: str, *, gpg_verify: bool, gpg_keys: list[Path]) -> int:
        from apt_ostree.client.local import remote_add

        return remote_add(self.path, name, url, gpg_verify=gpg_verify, gpg_keys=gpg_keys)

    def remote_list(self) -> list[tuple[str, str]]:
        from apt_ostree.client.local import remote_list

        return remote_list(self.path)

    def remote_delete(self, name: str) -> None:
        from apt_ostree.client.local import remote_delete

        remote_delete(self.path, name)


def open_client(sysroot: Path | None) -> Client:
    """The daemon for the booted system (`sysroot` None or `/`), or the daemon at
    $APT_OSTREE_BUS_ADDRESS when no sysroot is given; in-process otherwise."""
    address = os.environ.get(BUS_ADDRESS_ENV)
    if sysroot is None and address:
        from apt_ostree.client.dbus import DaemonClient

        return DaemonClient(address)
    path = sysroot if sysroot is not None else Path("/")
    if path.resolve() == Path("/") and BOOTED_FLAG.exists():
        from apt_ostree.client.dbus import DaemonClient

        return DaemonClient("system")
    from apt_ostree.client.local import LocalClient

    return LocalClient(path)
