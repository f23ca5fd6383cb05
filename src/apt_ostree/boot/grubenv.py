"""GRUB's environment block (`/boot/grub/grubenv`), read and written from Linux.

The block is exactly 1024 bytes: a signature line, `name=value` lines, then
`#` padding. GRUB's `save_env` writes into the file's existing sectors, and
GRUB's ext2 driver does not replay the journal: apt-ostree therefore rewrites
an existing block in place (same size, same blocks, data only, then fsync), and
creates one only where libostree freezes /boot afterwards (the generator).
"""

from __future__ import annotations

import os
from pathlib import Path

SIZE = 1024
SIGNATURE = "# GRUB Environment Block\n"
# Relative to the /boot filesystem (GRUB's `$prefix` is `($root)/grub`).
RELATIVE_PATH = Path("grub/grubenv")


class GrubEnvError(ValueError):
    pass


def parse(data: bytes) -> dict[str, str]:
    text = data.decode("utf-8", errors="replace")
    if not text.startswith(SIGNATURE):
        raise GrubEnvError("not a GRUB environment block")
    values: dict[str, str] = {}
    for line in text[len(SIGNATURE) :].split("\n"):
        if line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name] = value.replace("\\\n", "\n").replace("\\\\", "\\")
    return values


def render(values: dict[str, str]) -> bytes:
    body = "".join(f"{name}={value}\n" for name, value in values.items())
    data = (SIGNATURE + body).encode()
    if len(data) > SIZE:
        raise GrubEnvError("the GRUB environment block is full")
    return data + b"#" * (SIZE - len(data))


def read(path: Path) -> dict[str, str]:
    """The variables in the block at `path`; {} when there is none."""
    try:
        return parse(path.read_bytes())
    except FileNotFoundError:
        return {}


def write(path: Path, values: dict[str, str]) -> None:
    """Write the block: in place when it exists (see the module's docstring)."""
    data = render(values)
    if path.exists() and path.stat().st_size == SIZE:
        fd = os.open(path, os.O_WRONLY)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def update(path: Path, set_values: dict[str, str], unset: tuple[str, ...] = ()) -> bool:
    """Set and unset variables, keeping the others; False when nothing changed."""
    old = read(path)
    new = {k: v for k, v in old.items() if k not in unset}
    new.update(set_values)
    if new == old and path.exists():
        return False
    write(path, new)
    return True
