"""The download cache of layered packages, and the download itself.

A .deb enters the cache only under its plan's file name and only after its
sha256 (from the signed index) matched; a cached file is used again only when
its size and sha256 still match, so a truncated or tampered file is fetched
again, never installed. Downloads run in the resolver's child process
(aptchild.py's "fetch" op, `download()` below) with libapt-pkg's acquire and the
plan's APT configuration, so sources that need proxies or credentials work as
they do for the index files.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, cast

from apt_ostree.debian.aptstate import locked_statedir, prepare_statedir
from apt_ostree.errors import SourceError

if TYPE_CHECKING:
    import apt_pkg
    from apt.progress.base import AcquireProgress


class FetchError(SourceError):
    """A package could not be downloaded, or is missing from the cache with --cache-only."""


class _Planned(Protocol):
    """What the cache needs of a planned package (packages.PlannedPackage)."""

    @property
    def name(self) -> str: ...
    @property
    def filename(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...


def cache_name(name: str, version: str, arch: str) -> str:
    """The file name apt gives a package in its archive cache (the epoch's ':' quoted)."""
    return f"{name}_{version.replace(':', '%3a')}_{arch}.deb"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def cache_path(pkg: _Planned, cachedir: Path) -> Path:
    # The name comes from an index: it must not climb out of the cache.
    if "/" in pkg.filename or pkg.filename.startswith(".") or not pkg.filename:
        raise FetchError(f'package "{pkg.name}" has an invalid file name "{pkg.filename}"')
    return cachedir / pkg.filename


def cached_package(pkg: _Planned, cachedir: Path) -> Path | None:
    """`pkg`'s file in `cachedir` when its size and sha256 are the plan's, else None."""
    path = cache_path(pkg, cachedir)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size != pkg.size:
        return None
    if sha256_file(path) != pkg.sha256:
        return None
    return path


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


# --- in the child process -------------------------------------------------------------


class _DownloadProgress:
    """python-apt's acquire progress protocol, sent to the parent as "done / total" lines.

    python-apt sets the byte counters on this object before each call.
    """

    current_bytes = current_cps = fetched_bytes = last_bytes = total_bytes = 0.0
    current_items = elapsed_time = total_items = 0

    def __init__(self, out: IO[str], sizes: dict[str, int]) -> None:
        self._out = out
        self._sizes = sizes
        self._total = sum(sizes.values())
        self._finished: set[str] = set()
        self._last = ""

    def _send(self, done: float) -> None:
        text = (
            f"Downloading packages ({len(self._finished)}/{len(self._sizes)}): "
            f"{_human(min(done, self._total))} / {_human(self._total)}"
        )
        if text == self._last:
            return
        self._last = text
        self._out.write(json.dumps({"progress": text}) + "\n")
        self._out.flush()

    def _finished_bytes(self) -> int:
        return sum(self._sizes[uri] for uri in self._finished)

    def start(self) -> None:
        self._send(0)

    def finished(self) -> None:
        self._finished = set(self._sizes)
        self._send(self._total)

    def stop(self) -> None:
        pass

    def fetch(self, item: apt_pkg.AcquireItemDesc) -> None:
        pass

    def ims_hit(self, item: apt_pkg.AcquireItemDesc) -> None:
        self.done(item)

    def done(self, item: apt_pkg.AcquireItemDesc) -> None:
        if item.uri in self._sizes:
            self._finished.add(item.uri)
        self._send(self._finished_bytes())

    def fail(self, item: apt_pkg.AcquireItemDesc) -> None:
        pass

    def media_change(self, media: str, drive: str) -> bool:
        return False

    def pulse(self, owner: apt_pkg.Acquire) -> bool:
        self._send(max(self.current_bytes, self._finished_bytes()))
        return True


@contextmanager
def _apt_config(statedir: Path) -> Iterator[None]:
    """Initialise libapt-pkg with the configuration the plan was resolved with."""
    with tempfile.TemporaryDirectory(prefix="apt-ostree-fetch-") as tmp:
        conf = statedir / "apt.conf"
        if not statedir.is_absolute() or not conf.is_file():
            # The state directory is gone (cleaned up since the plan was made):
            # a configuration of our own, without the host's, still downloads.
            # The architecture plays no part in downloading.
            conf = prepare_statedir({"statedir": tmp, "arch": "all", "stanzas": []})
        os.environ["APT_CONFIG"] = str(conf)
        import apt_pkg

        apt_pkg.init_config()
        # A file: URI would otherwise be symlinked into the cache, not copied.
        apt_pkg.config.set("Acquire::Source-Symlinks", "false")
        apt_pkg.init_system()
        yield


def download(request: dict[str, Any], out: IO[str]) -> dict[str, Any]:
    """Download `request["packages"]` into `request["cachedir"]`; the answer is their paths."""
    cachedir = Path(request["cachedir"])
    packages: list[dict[str, Any]] = request["packages"]
    with locked_statedir(cachedir), _apt_config(Path(request["statedir"])):
        import apt_pkg

        partial = cachedir / "partial"
        partial.mkdir(parents=True, exist_ok=True)
        progress = _DownloadProgress(out, {pkg["uri"]: pkg["size"] for pkg in packages})
        # Duck-typed: subclassing apt's AcquireProgress would import all of `apt`.
        fetcher = apt_pkg.Acquire(cast("AcquireProgress", progress))
        items = []
        for pkg in packages:
            dest = partial / pkg["filename"]
            # acquire resumes from a partial file; a leftover one may be anything.
            dest.unlink(missing_ok=True)
            items.append(
                apt_pkg.AcquireFile(
                    fetcher,
                    uri=pkg["uri"],
                    hash=f"SHA256:{pkg['sha256']}",
                    size=pkg["size"],
                    descr=f"{pkg['name']} {pkg['version']}",
                    short_descr=pkg["name"],
                    destfile=str(dest),
                )
            )
        messages = ""
        try:
            fetcher.run()
        except apt_pkg.Error as e:
            messages = str(e)
        failures = []
        for pkg, item in zip(packages, items, strict=True):
            dest = partial / pkg["filename"]
            if item.status != apt_pkg.AcquireItem.STAT_DONE:
                # apt appends both hash lists to a mismatch: the first line says it.
                reason = (item.error_text or messages or "unknown error").splitlines()[0]
                if "Hash Sum mismatch" in reason:
                    reason = "it does not match the checksum of the signed index"
                failures.append(
                    f'package "{pkg["name"]}" {pkg["version"]} could not be downloaded '
                    f"from {pkg['uri']}: {reason}"
                )
            # libapt-pkg checked the hash already; the cache trusts no one else's word.
            elif not dest.is_file() or dest.is_symlink() or sha256_file(dest) != pkg["sha256"]:
                failures.append(
                    f'package "{pkg["name"]}" {pkg["version"]} from {pkg["uri"]} '
                    "does not match the checksum of the signed index"
                )
        if failures:
            for pkg in packages:
                (partial / pkg["filename"]).unlink(missing_ok=True)
            raise FetchError("; ".join(failures))
        paths = []
        for pkg in packages:
            final = cachedir / pkg["filename"]
            (partial / pkg["filename"]).replace(final)
            paths.append(str(final))
        progress.finished()
    return {"paths": paths}
