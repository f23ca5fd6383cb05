"""The errors a user can meet. Anything else is a bug and gets a traceback."""

from __future__ import annotations


class AptOstreeError(Exception):
    """A user-facing error: its message is printed as one line after `error: `."""

    exit_code = 1


class TreefileError(AptOstreeError):
    """The treefile is invalid: the message names the file, the line and the key."""


class LockfileError(AptOstreeError):
    """A lockfile is unreadable or invalid: the message names the file and the key."""


class ResolveError(AptOstreeError):
    """APT could not resolve the requested package set."""


class SourceError(AptOstreeError):
    """An APT source is unreachable, unsigned or otherwise unusable."""


class CommandError(AptOstreeError):
    """An external program failed; carries the command and its output."""

    def __init__(self, message: str, cmd: list[str] | None = None, output: str = "") -> None:
        super().__init__(message)
        self.cmd = cmd or []
        self.output = output


class RepoError(AptOstreeError):
    """The OSTree repository is missing, invalid or could not be written."""


EXIT_UNCHANGED = 77
