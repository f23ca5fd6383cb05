"""The GRUB config generator that libostree's grub2 backend runs (`OSTREE_GRUB2_EXEC`).

Debian 12's GRUB has no `blscfg`, so with `sysroot.bootloader=grub2` libostree
runs `<exec> -o /boot/loader.N/grub.cfg` after writing the new BLS entries to
`/boot/loader.N/entries` and before it swaps the `/boot/loader` symlink. This
module turns those entries into `menuentry`s, newest deployment first and the
default; `/boot/grub/grub.cfg -> ../loader/grub.cfg` makes the switch atomic.

Installed as /usr/lib/apt-ostree/grub2-generate; apt-ostree exports
`OSTREE_GRUB2_EXEC` itself before it deploys, and a drop-in does it for
`ostree-finalize-staged.service`.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from apt_ostree.boot import probation
from apt_ostree.settings import ConfigError, load_health_settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    # The generator itself runs without GI: libostree calls it mid-deploy.
    from apt_ostree.ostree import OSTree

EXEC_ENV = "OSTREE_GRUB2_EXEC"
INSTALLED_GENERATOR = Path("/usr/lib/apt-ostree/grub2-generate")
# Short, but long enough to pick the rollback deployment on a serial console.
TIMEOUT_SECONDS = 3
HEADER = f"""\
# Written by apt-ostree from the BLS entries in this directory; do not edit.
if [ "$grub_platform" = "efi" ]; then
  # UEFI firmware redirects its own console to the serial port: GRUB driving the
  # same UART as well would race the firmware's serial driver.
  terminal_input console
  terminal_output console
else
  serial --unit=0 --speed=115200
  terminal_input console serial
  terminal_output console serial
fi
set default=0
set timeout={TIMEOUT_SECONDS}
"""


@dataclass
class BootEntry:
    title: str
    version: int
    linux: str
    initrd: str | None
    options: str
    name: str


def parse_entry(path: Path) -> BootEntry:
    """Read one BLS entry (`key value` lines) as ostree writes them."""
    fields: dict[str, str] = {}
    initrds: list[str] = []  # the initramfs, then overlay initrds (initramfs-etc)
    for line in path.read_text().splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "initrd":
            initrds.append(value.strip())
        elif key and not key.startswith("#"):
            fields[key] = value.strip()
    if "linux" not in fields:
        raise ValueError(f"{path}: BLS entry without a linux line")
    try:
        version = int(fields.get("version", "0"))
    except ValueError:
        version = 0
    return BootEntry(
        title=fields.get("title", path.stem),
        version=version,
        linux=fields["linux"],
        initrd=" ".join(initrds) or None,
        options=fields.get("options", ""),
        name=path.stem,
    )


def read_entries(entries_dir: Path) -> list[BootEntry]:
    """The entries, default first: ostree gives the newest deployment the highest version."""
    entries = [parse_entry(p) for p in sorted(entries_dir.glob("*.conf"))]
    return sorted(entries, key=lambda e: (e.version, e.name), reverse=True)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def render(entries: list[BootEntry], token: str) -> str:
    """A grub.cfg whose paths are relative to the /boot filesystem (GRUB's root).

    `token` identifies this menu for boot counting (apt_ostree.boot.probation);
    entry 0, the deployment that may be on probation, gets its fail-fast kargs
    through a variable that is empty otherwise."""
    parts = [HEADER + probation.grub_script(token)]
    for i, entry in enumerate(entries):
        lines = [f"menuentry {_quote(entry.title)} --id {_quote(entry.name)} {{"]
        extra = f"${probation.KARGS_VAR} " if i == 0 else ""
        lines.append(f"    linux {entry.linux} {extra}{entry.options}".rstrip())
        if entry.initrd:
            lines.append(f"    initrd {entry.initrd}")
        lines.append("}")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def write_config(output: Path, *, arm_probation: bool = False) -> None:
    """Write the config for the entries beside `output` (`/boot/loader.N/entries`);
    with `arm_probation`, put its default entry on probation (docs/health.md)."""
    entries = read_entries(output.parent / "entries")
    token = probation.new_token()
    if arm_probation and len(entries) >= 2:
        _arm(output.parent.parent, token)
    text = render(entries, token)
    tmp = output.with_name(output.name + ".tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.rename(output)


def _arm(boot: Path, token: str) -> None:
    try:
        health = load_health_settings()
    except ConfigError as e:
        print(f"grub2-generate: {e}; the new deployment is not on probation", file=sys.stderr)
        return
    if health.enabled:
        # libostree freezes /boot after the generator: the block reaches the disk
        # before the new menu is swapped in.
        probation.arm(boot, token, health.boot_attempts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grub2-generate", description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        write_config(args.output, arm_probation=os.environ.get(probation.ARM_ENV) == "1")
    except (OSError, ValueError) as e:
        print(f"grub2-generate: {e}", file=sys.stderr)
        return 1
    return 0


def uses_grub2(repo: OSTree.Repo) -> bool:
    from apt_ostree.ostree import GLib

    try:
        return bool(repo.get_config().get_string("sysroot", "bootloader") == "grub2")
    except GLib.Error:  # no [sysroot] bootloader key
        return False


def export_generator(repo: OSTree.Repo) -> None:
    """Let libostree find the generator when this sysroot uses the grub2 backend.

    libostree reads `OSTREE_GRUB2_EXEC` from the environment of the deploying
    process; without it, it would run grub-mkconfig, which images do not ship.
    """
    if EXEC_ENV not in os.environ and uses_grub2(repo) and INSTALLED_GENERATOR.exists():
        os.environ[EXEC_ENV] = os.fspath(INSTALLED_GENERATOR)


@contextmanager
def generator_exec() -> Iterator[Path]:
    """A generator executable for this apt-ostree, installed or from the source tree.

    `compose disk-image` often runs from a checkout, where nothing is installed
    in /usr/lib/apt-ostree: a wrapper runs this module with this interpreter.
    """
    if INSTALLED_GENERATOR.exists():
        yield INSTALLED_GENERATOR
        return
    import tempfile

    package_parent = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="apt-ostree-grub2-") as tmp:
        script = Path(tmp) / "grub2-generate"
        script.write_text(
            f"#!{sys.executable}\n"
            "import sys\n"
            f"sys.path.insert(0, {os.fspath(package_parent)!r})\n"
            "from apt_ostree.boot.grubcfg import main\n"
            "sys.exit(main())\n"
        )
        script.chmod(0o755)
        yield script


if __name__ == "__main__":
    sys.exit(main())
