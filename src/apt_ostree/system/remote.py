"""Remotes of the sysroot's repo: add (GPG verification on by default), list, delete.

GPG is the signature mechanism: Debian 12's libostree is built without
libsodium, so `sign-ed25519` verification is not available. A remote added
with keys also verifies the summary's signature.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import Gio, GLib, OSTree
from apt_ostree.system.origin import Origin, OriginError
from apt_ostree.system.sysroot import Sysroot

URL_SCHEMES = ("http", "https", "file")


class RemoteError(AptOstreeError):
    pass


@dataclass(frozen=True)
class RemoteInfo:
    name: str
    url: str
    gpg_verify: bool


def _validate_name(name: str) -> None:
    try:
        OSTree.validate_remote_name(name)
    except GLib.Error as e:
        raise RemoteError(f'invalid remote name "{name}": {e.message}') from e


def _validate_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES or not (parts.netloc or parts.path):
        raise RemoteError(
            f'invalid remote URL "{url}": expected {", ".join(s + "://" for s in URL_SCHEMES)}'
        )


def _exists(repo: OSTree.Repo, name: str) -> bool:
    return name in (repo.remote_list() or [])


def add_remote(
    sysroot: Sysroot, name: str, url: str, *, gpg_verify: bool = True, gpg_keys: list[Path]
) -> int:
    """Add `name` -> `url` and trust the keys in `gpg_keys` for it; return how many.

    Checked before anything is written; if a key cannot be imported the remote
    is removed again, so that a failure leaves no half-configured remote.
    """
    _validate_name(name)
    _validate_url(url)
    repo = sysroot.repo
    if _exists(repo, name):
        raise RemoteError(f'remote "{name}" already exists')
    for key in gpg_keys:
        if not key.is_file():
            raise RemoteError(f"cannot import GPG keys from {key}: no such file")
    options = GLib.Variant(
        "a{sv}",
        {
            "gpg-verify": GLib.Variant("b", gpg_verify),
            # With a trusted key the summary must be signed too: it names the
            # commit of every ref, and an unsigned one could hold a client back.
            "gpg-verify-summary": GLib.Variant("b", gpg_verify and bool(gpg_keys)),
        },
    )
    try:
        repo.remote_change(None, OSTree.RepoRemoteChange.ADD, name, url, options, None)
    except GLib.Error as e:
        raise RemoteError(f'cannot add remote "{name}": {e.message}') from e
    imported = 0
    try:
        for key in gpg_keys:
            stream = Gio.File.new_for_path(os.fspath(key)).read(None)
            _, count = repo.remote_gpg_import(name, stream, None, None)
            if not count:
                raise RemoteError(f"{key} holds no GPG public key")
            imported += count
    except (GLib.Error, RemoteError) as e:
        repo.remote_change(None, OSTree.RepoRemoteChange.DELETE_IF_EXISTS, name, None, None, None)
        if isinstance(e, RemoteError):
            raise
        raise RemoteError(f'cannot import GPG keys for remote "{name}": {e.message}') from e
    return imported


def list_remotes(sysroot: Sysroot) -> list[RemoteInfo]:
    repo = sysroot.repo
    out = []
    for name in sorted(repo.remote_list() or []):
        _, url = repo.remote_get_url(name)
        _, verify = repo.remote_get_gpg_verify(name)
        out.append(RemoteInfo(name, str(url), bool(verify)))
    return out


def delete_remote(sysroot: Sysroot, name: str) -> None:
    """Delete `name`; refused while a deployment's origin pulls from it."""
    repo = sysroot.repo
    if not _exists(repo, name):
        raise RemoteError(f'remote "{name}" does not exist')
    for d in sysroot.deployments():
        try:
            origin = Origin.from_dict(d.origin)
        except OriginError:
            continue
        if origin.remote == name:
            raise RemoteError(
                f'remote "{name}" is used by deployment {d.index} ({origin.refspec});'
                " rebase to another remote first"
            )
    try:
        repo.remote_change(None, OSTree.RepoRemoteChange.DELETE, name, None, None, None)
    except GLib.Error as e:
        raise RemoteError(f'cannot delete remote "{name}": {e.message}') from e
