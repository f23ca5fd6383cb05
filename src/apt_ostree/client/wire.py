"""One D-Bus method call that returns a string, spoken on the socket directly.

`apt-ostree status` on a booted system is one GetStatus call: importing GLib
costs more than the call itself (bench/dbus), so reads that return a string go
through this instead. The D-Bus specification's wire format, little-endian;
only what such a call needs: unix sockets (path or abstract), SASL EXTERNAL,
Hello, one METHOD_CALL without arguments, its METHOD_RETURN or ERROR.
"""

from __future__ import annotations

import os
import socket
import struct

SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"
METHOD_CALL, METHOD_RETURN, ERROR = 1, 2, 3
PATH, INTERFACE, MEMBER, ERROR_NAME, REPLY_SERIAL, DESTINATION, SIGNATURE = 1, 2, 3, 4, 5, 6, 8
# A call may wait for D-Bus activation of the daemon.
TIMEOUT_S = 120


class WireError(Exception):
    """An ERROR reply: `name` is the D-Bus error name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class Unsupported(Exception):
    """An address this module does not speak (the caller uses GDBus instead)."""


def bus_address(bus: str) -> str:
    if bus == "system":
        return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or SYSTEM_BUS
    if bus == "session":
        address = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
        if not address:
            raise Unsupported("no session bus address")
        return address
    return bus


def _socket_path(address: str) -> str:
    """The first unix:path= or unix:abstract= of a D-Bus address list."""
    for entry in address.split(";"):
        transport, _, params = entry.partition(":")
        if transport != "unix":
            continue
        for param in params.split(","):
            key, _, value = param.partition("=")
            if key == "path":
                return _unescape(value)
            if key == "abstract":
                return "\0" + _unescape(value)
    raise Unsupported(f"cannot speak to {address}")


def _unescape(value: str) -> str:
    out, i = bytearray(), 0
    raw = value.encode()
    while i < len(raw):
        if raw[i : i + 1] == b"%":
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode()


def _pad(buf: bytearray, align: int) -> None:
    buf.extend(b"\0" * (-len(buf) % align))


def _field(buf: bytearray, code: int, kind: str, value: str) -> None:
    _pad(buf, 8)
    buf += struct.pack("<B", code) + struct.pack("<B", 1) + kind.encode() + b"\0"
    data = value.encode()
    if kind == "g":
        buf += struct.pack("<B", len(data)) + data + b"\0"
    else:
        _pad(buf, 4)
        buf += struct.pack("<I", len(data)) + data + b"\0"


def _call_message(serial: int, destination: str, path: str, interface: str, member: str) -> bytes:
    fields = bytearray()
    for code, kind, value in (
        (PATH, "o", path), (INTERFACE, "s", interface), (MEMBER, "s", member),
        (DESTINATION, "s", destination),
    ):  # fmt: skip
        _field(fields, code, kind, value)
    head = bytearray(b"l" + struct.pack("<BBBII", METHOD_CALL, 0, 1, 0, serial))
    head += struct.pack("<I", len(fields)) + fields
    _pad(head, 8)
    return bytes(head)


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def take(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the bus closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the bus closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def message(self) -> tuple[int, dict[int, object], bytes]:
        """(type, header fields, body) of the next message."""
        fixed = self.take(16)
        if fixed[:1] != b"l":
            raise Unsupported("a big-endian message")
        kind = fixed[1]
        body_len, _serial, fields_len = struct.unpack_from("<III", fixed, 4)
        raw = self.take(fields_len + (-(16 + fields_len) % 8))
        body = self.take(body_len)
        return kind, _parse_fields(raw[:fields_len]), body


def _parse_fields(raw: bytes) -> dict[int, object]:
    """Header fields; the offsets are relative to the message start (16 before `raw`)."""
    out: dict[int, object] = {}
    i = 0

    def align(n: int) -> None:
        nonlocal i
        i += -(16 + i) % n

    while i < len(raw):
        align(8)
        code = raw[i]
        sig_len = raw[i + 1]
        kind = raw[i + 2 : i + 2 + sig_len].decode()
        i += 3 + sig_len
        if kind == "g":
            n = raw[i]
            out[code] = raw[i + 1 : i + 1 + n].decode()
            i += n + 2
        elif kind in ("s", "o"):
            align(4)
            (n,) = struct.unpack_from("<I", raw, i)
            out[code] = raw[i + 4 : i + 4 + n].decode()
            i += 4 + n + 1
        elif kind == "u":
            align(4)
            (out[code],) = struct.unpack_from("<I", raw, i)
            i += 4
        else:
            raise Unsupported(f"a header field of type {kind}")
    return out


def _string(body: bytes) -> str:
    (n,) = struct.unpack_from("<I", body, 0)
    return body[4 : 4 + n].decode()


def call_string(address: str, destination: str, path: str, interface: str, member: str) -> str:
    """Call `member` (no arguments) and return its one string; WireError for an error
    reply, OSError when the bus cannot be reached, Unsupported when this module
    cannot speak it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT_S)
    try:
        sock.connect(_socket_path(address))
        sock.sendall(b"\0AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode() + b"\r\n")
        reader = _Reader(sock)
        if not reader.line().startswith(b"OK "):
            raise Unsupported("the bus refused EXTERNAL authentication")
        sock.sendall(b"BEGIN\r\n")
        hello = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello")
        sock.sendall(
            _call_message(1, *hello) + _call_message(2, destination, path, interface, member)
        )
        while True:
            kind, fields, body = reader.message()
            if fields.get(REPLY_SERIAL) != 2:
                continue  # Hello's reply, NameAcquired
            if kind == ERROR:
                message = _string(body) if fields.get(SIGNATURE) == "s" else ""
                raise WireError(str(fields.get(ERROR_NAME, "")), message)
            if kind == METHOD_RETURN and fields.get(SIGNATURE) == "s":
                return _string(body)
            raise Unsupported(f"an unexpected reply to {member}")
    finally:
        sock.close()
