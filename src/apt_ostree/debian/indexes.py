"""Index fetching in the resolver child: the sources' Release and Packages files.

Every source must be fetched and verified, or the operation fails naming each
failing source (`apt update` would only warn and go on with old or no lists).
Runs in the resolver child only: apt_pkg is imported there.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from apt_ostree.errors import ResolveError, SourceError

if TYPE_CHECKING:
    import apt_pkg
    from apt.progress.base import AcquireProgress

    from apt_ostree.debian.layerdebs import LocalRepo

_RELEASE_FILES = ("InRelease", "Release")


class _FetchProgress:
    """The acquire progress protocol of python-apt, sent to the parent as JSON lines."""

    current_bytes = current_cps = fetched_bytes = last_bytes = total_bytes = 0.0
    current_items = elapsed_time = total_items = 0

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._last = ""

    def _send(self, text: str) -> None:
        # An item is announced again for each stage (download, decompress).
        if text == self._last:
            return
        self._last = text
        self._out.write(json.dumps({"progress": text}) + "\n")
        self._out.flush()

    def fetch(self, item: apt_pkg.AcquireItemDesc) -> None:
        self._send(f"Get: {item.description}")

    def ims_hit(self, item: apt_pkg.AcquireItemDesc) -> None:
        self._send(f"Hit: {item.description}")

    def fail(self, item: apt_pkg.AcquireItemDesc) -> None:
        self._send(f"Err: {item.description}")

    def done(self, item: apt_pkg.AcquireItemDesc) -> None:
        pass

    def media_change(self, media: str, drive: str) -> bool:
        return False

    def pulse(self, owner: apt_pkg.Acquire) -> bool:
        return True

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def _split_apt_errors(text: str) -> list[str]:
    """python-apt joins pending messages as "E:one, W:two": split them again."""
    return [m.strip() for m in re.split(r"(?:^|, )(?=[EWNID]:)", text) if m.strip()]


def _source_names(stanzas: Iterable[str]) -> dict[str, str]:
    """The URIs as the stanzas spell them, by apt's normal form ("file:/x/")."""
    import apt_pkg

    names: dict[str, str] = {}
    for stanza in stanzas:
        section = apt_pkg.TagSection(stanza.strip("\n") + "\n")
        for uri in section.get("URIs", "").split():
            names[_normal_uri(uri)] = uri
    return names


def _normal_uri(uri: str) -> str:
    if uri.startswith("file:"):
        uri = "file:/" + uri[len("file:") :].lstrip("/")
    return uri.rstrip("/") + "/"


def _source_failure(
    meta: apt_pkg.MetaIndex, items: list[apt_pkg.AcquireItem], messages: list[str]
) -> str | None:
    """Why `meta` could not be fetched and verified, or None when it was."""
    import apt_pkg

    label = f"{meta.uri.rstrip('/')} {meta.dist}"
    prefix = meta.uri + (meta.dist if meta.dist.endswith("/") else f"dists/{meta.dist}/")
    failed = [
        item
        for item in items
        if item.desc_uri.startswith(prefix)
        and item.status != apt_pkg.AcquireItem.STAT_DONE
        and item.error_text
    ]
    mine = [m for m in messages if f"'{label} " in m or f" {label} " in m]
    texts = [item.error_text for item in failed] + mine
    for text in texts:
        if keys := re.findall(r"NO_PUBKEY ([0-9A-Fa-f]+)", text):
            return f"is signed by an unknown key (NO_PUBKEY {', '.join(keys)})"
    for item in failed:
        if item.status == apt_pkg.AcquireItem.STAT_TRANSIENT_NETWORK_ERROR:
            return f"is unreachable: {item.error_text}"
    for text in texts:
        if "is not signed" in text:
            return "is not signed"
    for text in texts:
        if "GPG error" in text or "signature" in text.lower():
            return f"failed signature verification: {_strip_severity(text)}"
    if failed:
        item = failed[0]
        return f"could not be fetched: {item.desc_uri}: {item.error_text}"
    if mine:
        return f"could not be fetched: {_strip_severity(mine[0])}"
    return None


def _strip_severity(message: str) -> str:
    return message[2:] if message[1:2] == ":" else message


def fetch_indexes(stanzas: Sequence[str], out: IO[str]) -> None:
    """Bring the index files of `stanzas` up to date; any failure is fatal.

    `apt update` only warns about a source it could not fetch and goes on with
    old or no lists; a tree composed from half the sources would be wrong, so
    every failure becomes one SourceError naming each failing source.
    """
    import apt_pkg

    sources = apt_pkg.SourceList()
    try:
        sources.read_main_list()
    except apt_pkg.Error as e:
        raise SourceError(f"invalid APT sources: {'; '.join(_split_apt_errors(str(e)))}") from e
    if not sources.list:
        raise SourceError("no APT sources are configured")
    # Duck-typed: subclassing apt's AcquireProgress would import all of `apt`.
    fetcher = apt_pkg.Acquire(cast("AcquireProgress", _FetchProgress(out)))
    # all=False: all=True also queues every index directly (for --print-uris),
    # fetching them twice.
    sources.get_indexes(fetcher, False)  # type: ignore[attr-defined]  # not in the stubs
    messages: list[str] = []
    try:
        fetcher.run()
    except apt_pkg.Error as e:
        messages = _split_apt_errors(str(e))
    items = list(fetcher.items)
    names = _source_names(stanzas)
    failures = []
    for meta in sources.list:
        reason = _source_failure(meta, items, messages)
        if reason is not None:
            uri = names.get(_normal_uri(meta.uri), meta.uri)
            failures.append(f"source {uri} {meta.dist} {reason}")
    errors = [_strip_severity(m) for m in messages if m.startswith("E:")]
    if not failures and errors:
        failures = errors
    if failures:
        raise SourceError("; ".join(failures))


def _lists_complete(skip_uri: str | None) -> bool:
    """Whether every configured source (but `skip_uri`) has its index files cached.

    A source's index list names indexes that its Release file may not have
    (binary-all), so "cached" means: the Release file and some package index.
    """
    import apt_pkg

    sources = apt_pkg.SourceList()
    try:
        sources.read_main_list()
    except apt_pkg.Error:
        # fetch_indexes() reports it.
        return False
    lists = Path(apt_pkg.config.find_dir("Dir::State::lists"))
    metas = [meta for meta in sources.list if _normal_uri(meta.uri) != skip_uri]
    for meta in metas:
        dist = meta.dist if meta.dist.endswith("/") else f"dists/{meta.dist}/"
        releases = [apt_pkg.uri_to_filename(meta.uri + dist + name) for name in _RELEASE_FILES]
        if not any((lists / name).is_file() for name in releases):
            return False
        if not any(index.exists for index in meta.index_files):
            return False
    return bool(metas)


@contextlib.contextmanager
def _only_sources(sources: Path) -> Iterator[None]:
    """Make `sources` libapt-pkg's only sources file for the duration of the block."""
    import apt_pkg

    keys = ("Dir::Etc::sourcelist", "Dir::Etc::sourceparts")
    saved = {key: apt_pkg.config.find(key) for key in keys}
    apt_pkg.config.set("Dir::Etc::sourcelist", str(sources))
    # A directory that does not exist: no parts at all.
    apt_pkg.config.set("Dir::Etc::sourceparts", str(sources.with_suffix(".none")))
    try:
        yield
    finally:
        for key, value in saved.items():
            apt_pkg.config.set(key, value)


def update_lists(
    stanzas: Sequence[str], out: IO[str], *, refresh: bool, local: LocalRepo | None = None
) -> None:
    """Fetch the index files: all of them with `refresh`, else only the missing ones.

    A local repository's index is new with every set of local .debs, so it is
    fetched (copied) even when the other sources' cached lists are used.
    """
    all_stanzas = [*stanzas, local.stanza] if local else list(stanzas)
    if refresh or not _lists_complete(_normal_uri(local.uri) if local else None):
        fetch_indexes(all_stanzas, out)
    elif local is not None:
        with _only_sources(local.sources):
            fetch_indexes([local.stanza], out)


def newest_index_date() -> int | None:
    """The newest `Date:` of the configured sources' cached Release files, in seconds."""
    import apt_pkg

    sources = apt_pkg.SourceList()
    sources.read_main_list()
    lists = Path(apt_pkg.config.find_dir("Dir::State::lists"))
    dates = []
    for meta in sources.list:
        dist = meta.dist if meta.dist.endswith("/") else f"dists/{meta.dist}/"
        for name in _RELEASE_FILES:
            path = lists / apt_pkg.uri_to_filename(meta.uri + dist + name)
            if not path.is_file():
                continue
            found = re.search(r"^Date: *(.+)$", path.read_text(errors="replace"), re.MULTILINE)
            with contextlib.suppress(TypeError, ValueError):
                if found:
                    dates.append(int(email.utils.parsedate_to_datetime(found[1]).timestamp()))
            break
    return max(dates, default=None)


def drop_lists(statedir: Path) -> None:
    lists = statedir / "state" / "lists"
    for path in lists.iterdir():
        if path.is_file():
            path.unlink()
    for path in (statedir / "cache").glob("*.bin"):
        path.unlink()


def archive_location(
    ver: apt_pkg.Version,
    sources: apt_pkg.SourceList,
    records: apt_pkg.PackageRecords,
    local: LocalRepo | None = None,
) -> tuple[str, str]:
    """The download URI of `ver` and its sha256, from the (signed) index it is listed in."""
    import apt_pkg

    skip = apt_pkg.uri_to_filename(local.uri) if local else None
    for pkgfile, offset in ver.file_list:
        if skip and Path(pkgfile.filename).name.startswith(skip):
            continue
        index = sources.find_index(pkgfile)
        if index is None:
            # The dpkg status file.
            continue
        records.lookup((pkgfile, offset))
        uri = index.archive_uri(records.filename)
        try:
            sha256 = records.hashes.find("SHA256").hashvalue
        except (KeyError, AttributeError, apt_pkg.Error):
            sha256 = ""
        if not sha256:
            raise ResolveError(
                f'package "{ver.parent_pkg.name}" {ver.ver_str} has no SHA256 checksum '
                f"in the index of {uri}"
            )
        return uri, sha256
    raise ResolveError(
        f'package "{ver.parent_pkg.name}" {ver.ver_str} is not available from the configured '
        "sources"
    )
