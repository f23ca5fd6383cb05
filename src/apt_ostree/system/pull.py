"""Pulling commits from a remote into the sysroot's repo, with progress.

libostree writes a pulled ref only when the whole pull succeeded, so a failed
pull changes no ref; the objects it fetched are reused by the next attempt.
Its errors are turned into one-line messages that say what went wrong with the
remote: unreachable, ref missing, commit not signed by a trusted key, older
than the deployment.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from apt_ostree.cancel import Cancelled, gio_cancellable
from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import Gio, GLib, OSTree
from apt_ostree.reporter import Reporter

# Fixed by ostree commit fc5aef6f ("lib/pull: Don't scan commit objects we fetch
# via deltas"), first released in 2023.7.
DELTA_TARGET_SCAN_BUG = not OSTree.check_version(2023, 7)


class PullError(AptOstreeError):
    pass


class RemoteUnreachableError(PullError):
    pass


class RefNotInRemoteError(PullError):
    pass


class UntrustedCommitError(PullError):
    pass


class DowngradeError(PullError):
    pass


class UntrustedSummaryError(PullError):
    pass


class RefBindingError(PullError):
    pass


@dataclass
class PullResult:
    """What a pull brought: bytes over the wire, objects and static-delta parts."""

    bytes_transferred: int = 0
    objects_fetched: int = 0
    delta_parts_fetched: int = 0

    def describe(self) -> str:
        parts = [f"{format_size(self.bytes_transferred)} fetched"]
        if self.delta_parts_fetched:
            parts.append(f"{self.delta_parts_fetched} static delta part(s)")
        if self.objects_fetched:
            parts.append(f"{self.objects_fetched} object(s)")
        return ", ".join(parts)


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def remote_url(repo: OSTree.Repo, remote: str) -> str:
    try:
        _, url = repo.remote_get_url(remote)
    except GLib.Error as e:
        raise PullError(f'remote "{remote}" is not configured; see "apt-ostree remote list"') from e
    return str(url)


def _progress_value(progress: OSTree.AsyncProgress, key: str) -> int:
    value = progress.get_variant(key)
    return int(value.unpack()) if value is not None else 0


def _progress_text(progress: OSTree.AsyncProgress) -> str:
    status = progress.get_status()
    if status:
        return str(status)
    transferred = format_size(_progress_value(progress, "bytes-transferred"))
    total_parts = _progress_value(progress, "total-delta-parts")
    if total_parts:
        done = _progress_value(progress, "fetched-delta-parts")
        return f"Receiving delta parts: {done}/{total_parts} ({transferred})"
    fetched = _progress_value(progress, "fetched")
    requested = _progress_value(progress, "requested")
    if _progress_value(progress, "outstanding-metadata-fetches") and not fetched:
        scanned = _progress_value(progress, "scanned-metadata")
        return f"Receiving metadata: {scanned} scanned ({transferred})"
    return f"Receiving objects: {fetched}/{requested} ({transferred})"


def pull(
    repo: OSTree.Repo,
    remote: str,
    targets: list[str],
    *,
    reporter: Reporter,
    commit_only: bool = False,
    depth: int = 0,
    timestamp_from: str | None = None,
) -> PullResult:
    """Pull refs or commit checksums (`targets`) of `remote` into `repo`.

    `commit_only` fetches commit objects alone (their metadata, no tree);
    `depth` -1 follows the whole parent chain. With `timestamp_from`, a commit
    older than that local commit is refused before any ref is written.
    """
    url = remote_url(repo, remote)
    flags = OSTree.RepoPullFlags.COMMIT_ONLY if commit_only else OSTree.RepoPullFlags.NONE
    options: dict[str, GLib.Variant] = {
        "refs": GLib.Variant("as", targets),
        "flags": GLib.Variant("i", int(flags)),
        "depth": GLib.Variant("i", depth),
    }
    if timestamp_from is not None:
        options["timestamp-check-from-rev"] = GLib.Variant("s", timestamp_from)
    progress = OSTree.AsyncProgress.new()
    cancellable = gio_cancellable()

    def changed(p: OSTree.AsyncProgress) -> None:
        # Raising here would not stop libostree (GI prints and goes on): a cancelled
        # transaction stops the pull through `cancellable` instead.
        with contextlib.suppress(Cancelled):
            reporter.progress(_progress_text(p))

    progress.connect("changed", changed)
    try:
        if not commit_only and DELTA_TARGET_SCAN_BUG:
            # libostree < 2023.7 also fetches, as plain objects, files that a static
            # delta is still writing when the delta brought the commit object itself
            # (ostree#2053). With the commit already here, the delta alone is used.
            commit_options = dict(
                options, flags=GLib.Variant("i", int(OSTree.RepoPullFlags.COMMIT_ONLY))
            )
            repo.pull_with_options(remote, GLib.Variant("a{sv}", commit_options), None, cancellable)
        repo.pull_with_options(remote, GLib.Variant("a{sv}", options), progress, cancellable)
    except GLib.Error as e:
        if e.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED):
            raise Cancelled() from e
        raise pull_error(e, remote, url, targets) from e
    finally:
        progress.finish()
        reporter.progress_done()
    return PullResult(
        bytes_transferred=_progress_value(progress, "bytes-transferred"),
        objects_fetched=_progress_value(progress, "fetched"),
        delta_parts_fetched=_progress_value(progress, "fetched-delta-parts"),
    )


_CURL_ERROR = re.compile(r"While fetching (\S+): \[\d+\] (.*)")
_NO_BRANCH = re.compile(r"No such branch '([^']*)'")
_GPG_COMMIT = re.compile(r"Commit ([0-9a-f]{64}): ")
_GPG_KEY_ID = re.compile(r"key ID ([0-9A-F]+)")
# libostree says either, depending on whether summary.sig is missing or empty.
_NO_SUMMARY_SIGNATURE = re.compile(r"but no summary(\.sig| signatures) found")
# libostree quotes refs with U+2018/U+2019.
_REF_BINDING = re.compile(
    r"(?:Commit ([0-9a-f]{64}): )?Commit has no requested ref \u2018([^\u2019]*)\u2019"
    r" in ref binding metadata \((.*)\)"
)
_OLDER = re.compile(
    r"revision '([0-9a-f]{64})' with timestamp '([^']*)' is chronologically older than"
    r" current revision '([0-9a-f]{64})' with timestamp '([^']*)'"
)


def pull_error(e: GLib.Error, remote: str, url: str, targets: list[str]) -> PullError:
    """A one-line error for a failed pull."""
    message = str(e.message)
    if m := _CURL_ERROR.search(message):
        return RemoteUnreachableError(f'cannot reach remote "{remote}" ({url}): {m.group(2)}')
    if m := _NO_BRANCH.search(message):
        return RefNotInRemoteError(f'ref "{m.group(1)}" is not in remote "{remote}" ({url})')
    if e.matches(Gio.io_error_quark(), Gio.IOErrorEnum.NOT_FOUND) and "HTTP 404" in message:
        what = ", ".join(targets)
        return RefNotInRemoteError(f'"{what}" is not in remote "{remote}" ({url})')
    if _NO_SUMMARY_SIGNATURE.search(message) or (
        "summary" in message.lower() and e.domain == "OstreeGpgError"
    ):
        return UntrustedSummaryError(
            f'the summary of remote "{remote}" ({url}) is not signed by a key trusted for it'
            f" ({_gpg_reason(message)})"
        )
    if e.domain == "OstreeGpgError" or "signatures found" in message:
        m = _GPG_COMMIT.search(message)
        commit = m.group(1) if m else ", ".join(targets)
        return UntrustedCommitError(
            f'commit {commit} is not signed by a key trusted for remote "{remote}"'
            f" ({_gpg_reason(message)})"
        )
    if m := _REF_BINDING.search(message):
        commit = m.group(1) or ", ".join(targets)
        bound = m.group(3).replace("\u2018", '"').replace("\u2019", '"')
        return RefBindingError(
            f'commit {commit} of remote "{remote}" is bound to {bound}, not to "{m.group(2)}";'
            " refusing it"
        )
    if m := _OLDER.search(message):
        return DowngradeError(
            f"the new commit {m.group(1)} ({m.group(2)}) is older than the deployed commit"
            f" {m.group(3)} ({m.group(4)}); use --allow-downgrade to deploy it anyway"
        )
    return PullError(f'cannot pull {", ".join(targets)} from remote "{remote}" ({url}): {message}')


def _gpg_reason(message: str) -> str:
    """libostree's verification failure in a few words (it spans several lines)."""
    if "no signatures found" in message.lower() or _NO_SUMMARY_SIGNATURE.search(message):
        return "no signatures found"
    if "public key not found" in message and (m := _GPG_KEY_ID.search(message)):
        return f"signed by unknown key {m.group(1)}"
    text = _GPG_COMMIT.sub("", message)
    text = re.sub(r"\s*\(use gpg-verify=false[^)]*\)", "", text)
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())
