"""The in-process path (`--sysroot PATH`): the calls apt-ostreed would make, made
here, under the same sysroot lock."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from apt_ostree.client import Client
from apt_ostree.errors import AptOstreeError
from apt_ostree.reporter import Reporter
from apt_ostree.requests import Request

if TYPE_CHECKING:
    from apt_ostree.system.queries import DbSource
    from apt_ostree.system.sysroot import Sysroot


class LocalClient(Client):
    def __init__(self, path: Path) -> None:
        self._path = path
        self._sysroot: Sysroot | None = None

    @property
    def path(self) -> Path:
        return self._path

    def sysroot(self) -> Sysroot:
        from apt_ostree.system.sysroot import Sysroot

        if self._sysroot is None:
            self._sysroot = Sysroot(self._path)
        return self._sysroot

    @property
    def booted(self) -> bool:
        return self.sysroot().booted

    def status(self) -> dict[str, Any]:
        from apt_ostree.system.status import sysroot_status

        return sysroot_status(self.sysroot())

    def kernel_args(
        self, osname: str | None, *, index: int | None, import_proc_cmdline: bool
    ) -> str:
        from apt_ostree.system.queries import kernel_args

        return kernel_args(
            self.sysroot(), osname, index=index, import_proc_cmdline=import_proc_cmdline
        )

    def search(self, osname: str | None, terms: list[str], reporter: Reporter) -> list[Any]:
        from apt_ostree.system.queries import search

        return search(self.sysroot(), osname, terms, reporter)

    def db_list(self, args: list[str], repo: Path | None) -> list[dict[str, Any]]:
        from apt_ostree.system.queries import db_list

        return db_list(self._db_with_sysroot(repo), args)

    def db_diff(
        self,
        from_rev: str | None,
        to_rev: str | None,
        *,
        base: bool,
        repo: Path | None,
        changelogs: bool = False,
    ) -> dict[str, Any]:
        from apt_ostree.system.queries import db_diff

        return db_diff(
            self._db_with_sysroot(repo), from_rev, to_rev, base=base, changelogs=changelogs
        )

    def db_version(self, revs: list[str], repo: Path | None) -> list[dict[str, Any]]:
        from apt_ostree.system.queries import db_version

        return db_version(self._db_with_sysroot(repo), revs)

    def _db_with_sysroot(self, repo: Path | None) -> DbSource:
        """With --repo, the sysroot is opened only if a default revision needs it."""
        from apt_ostree.system.db import open_repo
        from apt_ostree.system.queries import DbSource

        return DbSource(open_repo(repo) if repo else self.sysroot().repo, self.sysroot)

    def transact(self, request: Request, reporter: Reporter) -> dict[str, Any]:
        from apt_ostree.system.operations import prepare
        from apt_ostree.system.sysroot import command_line

        if request.method == "AutomaticUpdateTrigger":
            request.close_files()
            raise AptOstreeError(
                "--trigger-automatic-update-policy needs apt-ostreed, whose configuration"
                f" holds the policy; {self._path} is an offline sysroot"
            )
        try:
            operation = prepare(request)
            with self.sysroot().locked(command_line()) as sysroot:
                return operation.run(sysroot, reporter)
        finally:
            request.close_files()

    def cancel(self) -> str | None:
        raise AptOstreeError(
            f"cancel needs apt-ostreed, which serves the booted system; {self._path} is"
            " an offline sysroot (interrupt the apt-ostree command that holds it instead)"
        )

    def reload(self) -> None:
        raise AptOstreeError(
            f"reload needs apt-ostreed, which serves the booted system; {self._path} is"
            " an offline sysroot"
        )


# -- remotes: in-process on both paths -----------------------------------------------


def remote_add(path: Path, name: str, url: str, *, gpg_verify: bool, gpg_keys: list[Path]) -> int:
    from apt_ostree.system.remote import add_remote
    from apt_ostree.system.sysroot import Sysroot, command_line

    with Sysroot(path).locked(command_line()) as sysroot:
        return add_remote(sysroot, name, url, gpg_verify=gpg_verify, gpg_keys=gpg_keys)


def remote_list(path: Path) -> list[tuple[str, str]]:
    from apt_ostree.system.remote import list_remotes
    from apt_ostree.system.sysroot import Sysroot

    return [(r.name, r.url) for r in list_remotes(Sysroot(path))]


def remote_delete(path: Path, name: str) -> None:
    from apt_ostree.system.remote import delete_remote
    from apt_ostree.system.sysroot import Sysroot, command_line

    with Sysroot(path).locked(command_line()) as sysroot:
        delete_remote(sysroot, name)
