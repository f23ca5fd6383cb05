"""Fetching image manifests, configs and single blobs through skopeo.

skopeo's `experimental-image-proxy` (the interface ostree-ext and bootc use)
serves one image at a time over a SOCK_SEQPACKET socket: a JSON request per
packet, a JSON reply, and bulky data over a pipe whose read end comes with the
reply. It speaks every transport skopeo knows (registries with their
registries.conf/auth settings, oci:, oci-archive:, containers-storage:) and
lets us fetch exactly the layers that are missing. Blob digests are checked
here, as the bytes arrive, whatever skopeo does.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

from apt_ostree.errors import AptOstreeError
from apt_ostree.oci.skopeo import skopeo_command

_MAX_REPLY = 32 * 1024


class FetchError(AptOstreeError):
    pass


class DigestMismatchError(FetchError):
    pass


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


class ImageProxy:
    """One `skopeo experimental-image-proxy` process (a context manager)."""

    def __init__(self, extra_args: list[str] | None = None) -> None:
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [*skopeo_command(), "experimental-image-proxy",
                 "--sockfd", str(theirs.fileno()), *(extra_args or [])],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )  # fmt: skip
        except FileNotFoundError as e:
            self._sock.close()
            raise FetchError("skopeo is not installed (apt install skopeo)") from e
        finally:
            theirs.close()
        self.protocol = str(self.call("Initialize")[0])

    def __enter__(self) -> ImageProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError, FetchError):
            self.call("Shutdown")
        self._sock.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stderr is not None:
            self._proc.stderr.close()

    def call(self, method: str, *args: Any) -> tuple[Any, int, int | None]:
        """Send a request; return (value, pipe id, read end of the data pipe or None)."""
        try:
            self._sock.sendmsg([json.dumps({"method": method, "args": list(args)}).encode()])
            fds = array.array("i")
            data, ancdata, _flags, _addr = self._sock.recvmsg(
                _MAX_REPLY, socket.CMSG_SPACE(2 * fds.itemsize)
            )
        except OSError as e:
            raise FetchError(f"skopeo image proxy: {e}; {self._stderr()}") from e
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if not data:
            raise FetchError(f"skopeo image proxy exited: {self._stderr()}")
        reply = json.loads(data)
        if not reply.get("success"):
            for fd in fds:
                os.close(fd)
            raise FetchError(_first_line(reply.get("error") or "skopeo image proxy failed"))
        pipeid = int(reply.get("pipeid") or 0)
        for extra in fds[1:]:
            os.close(extra)
        return reply.get("value"), pipeid, (fds[0] if pipeid and fds else None)

    def _stderr(self) -> str:
        if self._proc.poll() is None or self._proc.stderr is None:
            return "no reply"
        return _first_line(self._proc.stderr.read().decode(errors="replace"))

    @contextlib.contextmanager
    def _pipe(self, method: str, *args: Any) -> Iterator[tuple[Any, IO[bytes]]]:
        value, pipeid, fd = self.call(method, *args)
        if fd is None:
            raise FetchError(f"skopeo image proxy: {method} returned no data")
        # skopeo closes the pipe's write end only in FinishPipe, which returns once
        # everything is written: call it beside the reader, as the reference client does.
        errors: list[Exception] = []

        def finish() -> None:
            try:
                self.call("FinishPipe", pipeid)
            except Exception as e:  # reported after the read
                errors.append(e)

        finisher = threading.Thread(target=finish, daemon=True)
        finisher.start()
        try:
            with os.fdopen(fd, "rb") as f:
                yield value, f
                while f.read(1 << 20):
                    pass
        finally:
            finisher.join()
        if errors:
            raise errors[0]

    def read_all(self, method: str, *args: Any) -> tuple[Any, bytes]:
        with self._pipe(method, *args) as (value, f):
            return value, f.read()

    @contextlib.contextmanager
    def blob(self, image: int, digest: str, size: int) -> Iterator[IO[bytes]]:
        with self._pipe("GetBlob", image, digest, size) as (_value, f):
            yield f


class VerifiedReader:
    """A file-like reader that hashes what passes and counts the bytes; `check()`
    at the end raises if the content is not `digest`."""

    def __init__(self, raw: IO[bytes], digest: str, progress: Callable[[int], None]) -> None:
        algo, _, self._expected = digest.partition(":")
        if algo != "sha256" or len(self._expected) != 64:
            raise FetchError(f"unsupported blob digest {digest}")
        self._raw = raw
        self._hash = hashlib.sha256()
        self._digest = digest
        self._progress = progress
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._hash.update(data)
        self.count += len(data)
        self._progress(len(data))
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def check(self) -> None:
        self.drain()
        if self._hash.hexdigest() != self._expected:
            raise DigestMismatchError(
                f"blob {self._digest} is corrupt: its content has digest"
                f" sha256:{self._hash.hexdigest()}"
            )
