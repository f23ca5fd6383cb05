"""The APT state directory of a resolver child: its apt.conf, layout and lock.

Everything libapt-pkg would read or write on the host (configuration, sources,
keyrings, lists, binary caches) is moved into one directory owned by the
caller, so that the host's /etc/apt is never read and two callers with
different directories never meet.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The sources file of a layer request's local .debs (see layerdebs.py).
LOCAL_SOURCES = "local-debs.sources"


def _apt_conf(statedir: Path, arch: str) -> str:
    state = statedir / "state"
    options = {
        # Every path libapt-pkg would read or write on the host, moved into statedir.
        "Dir::Etc": f"{statedir / 'etc'}/",
        "Dir::Etc::main": "apt.conf",
        "Dir::Etc::parts": "apt.conf.d",
        "Dir::Etc::sourcelist": "sources.list",
        "Dir::Etc::sourceparts": "sources.list.d",
        "Dir::Etc::preferences": "preferences",
        "Dir::Etc::preferencesparts": "preferences.d",
        "Dir::Etc::trusted": "trusted.gpg",
        "Dir::Etc::trustedparts": "trusted.gpg.d",
        "Dir::State": f"{state}/",
        "Dir::State::lists": f"{state / 'lists'}/",
        "Dir::State::status": str(state / "status"),
        "Dir::Cache": f"{statedir / 'cache'}/",
        "Dir::Log": f"{statedir / 'log'}/",
        "APT::Architecture": arch,
        "APT::Install-Suggests": "false",
        # The state directory and local file: repositories may not be readable
        # by the _apt user that apt would otherwise drop to.
        "APT::Sandbox::User": "root",
        "Acquire::Languages": "none",
        "Acquire::AllowInsecureRepositories": "false",
        "Acquire::AllowDowngradeToInsecureRepositories": "false",
        "Acquire::AllowWeakRepositories": "false",
        # apt's default (3, with growing delays) makes an unreachable source
        # take 7 s to report; one retry still rides out a dropped connection.
        "Acquire::Retries": "1",
    }
    lines = [f"{key} {_quote(value)};" for key, value in options.items()]
    lines.append(f"APT::Architectures {{ {_quote(arch)}; }};")
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    # apt.conf has no escapes; the values are paths and checked names.
    if '"' in value or "\n" in value:
        raise ValueError(f"cannot write {value!r} into apt.conf")
    return f'"{value}"'


def _write_if_changed(path: Path, text: str) -> None:
    # libapt-pkg rebuilds its binary cache when the sources file is newer than
    # it, so an unchanged file must keep its mtime.
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def prepare_statedir(request: dict[str, Any]) -> Path:
    statedir = Path(request["statedir"])
    for sub in (
        "etc/apt.conf.d",
        "etc/preferences.d",
        "etc/sources.list.d",
        "etc/trusted.gpg.d",
        "state/lists/partial",
        "cache/archives/partial",
        "log",
    ):
        (statedir / sub).mkdir(parents=True, exist_ok=True)
    status = statedir / "state" / "status"
    if not status.exists():
        # A fresh tree: nothing is installed.
        status.touch()
    conf = statedir / "apt.conf"
    _write_if_changed(conf, _apt_conf(statedir, request["arch"]))
    sources = "\n".join(stanza.strip("\n") + "\n" for stanza in request["stanzas"])
    _write_if_changed(statedir / "etc" / "sources.list.d" / "apt-ostree.sources", sources)
    # Local .debs are a source of one layer resolution only (see local_repo).
    (statedir / "etc" / "sources.list.d" / LOCAL_SOURCES).unlink(missing_ok=True)
    return conf


@contextlib.contextmanager
def locked_statedir(statedir: Path) -> Iterator[None]:
    """Hold the state directory: two resolutions must not write into it at once."""
    statedir.mkdir(parents=True, exist_ok=True)
    with (statedir / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
