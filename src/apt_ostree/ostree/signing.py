"""Signing commits and summaries, and what a commit is bound to.

GPG through libostree's gpgme is the mechanism everywhere. ed25519
(`ostree sign`) exists only when the host's libostree was built with
libsodium (Debian 12's and 13's are not): `ed25519_available()` asks the
library instead of assuming.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from apt_ostree.errors import RepoError
from apt_ostree.ostree import Gio, GLib, OSTree

REF_BINDING_KEY = "ostree.ref-binding"
COLLECTION_BINDING_KEY = "ostree.collection-binding"


@dataclass(frozen=True)
class GpgSigner:
    """A GPG key (id or fingerprint) and the GnuPG home that holds its secret part."""

    key_id: str
    homedir: Path | None = None

    @property
    def home(self) -> str | None:
        return os.fspath(self.homedir) if self.homedir is not None else None

    def describe(self) -> str:
        where = f" in {self.homedir}" if self.homedir is not None else ""
        return f"GPG key {self.key_id}{where}"


def ed25519_available() -> bool:
    """Whether this libostree can sign and verify with ed25519."""
    try:
        OSTree.Sign.get_by_name("ed25519")
    except GLib.Error:
        return False
    return True


def check_signer(signer: GpgSigner) -> None:
    """Fail now, before anything is composed or written, when the key cannot sign."""
    if signer.homedir is not None and not signer.homedir.is_dir():
        raise RepoError(f"--gpg-homedir {signer.homedir}: no such directory")
    # Signing a few bytes needs no repository: an unopened one serves.
    repo = OSTree.Repo.new(Gio.File.new_for_path("/"))
    try:
        repo.gpg_sign_data(
            GLib.Bytes.new(b"apt-ostree"), GLib.Bytes.new(b""), [signer.key_id], signer.home, None
        )
    except GLib.Error as e:
        raise RepoError(f"cannot sign with {signer.describe()}: {e.message}") from e


def binding_metadata(repo: OSTree.Repo, ref: str) -> dict[str, object]:
    """What binds a commit to the ref (and collection) it is published on, so that a
    server cannot hand a client a commit signed for another ref."""
    meta: dict[str, object] = {REF_BINDING_KEY: [ref]}
    collection = repo.get_collection_id()
    if collection:
        meta[COLLECTION_BINDING_KEY] = str(collection)
    return meta


def sign_commit(repo: OSTree.Repo, checksum: str, signer: GpgSigner) -> None:
    try:
        repo.sign_commit(checksum, signer.key_id, signer.home, None)
    except GLib.Error as e:
        raise RepoError(
            f"cannot sign commit {checksum} with {signer.describe()}: {e.message}"
        ) from e


def regenerate_summary(repo: OSTree.Repo, signer: GpgSigner | None = None) -> None:
    """Rewrite the summary (refs, static deltas) and, with `signer`, its signature
    (libostree removes a `summary.sig` that no longer matches)."""
    try:
        repo.regenerate_summary(None, None)
        if signer is not None:
            repo.add_gpg_signature_summary([signer.key_id], signer.home, None)
    except GLib.Error as e:
        raise RepoError(f"cannot update the summary file: {e.message}") from e
