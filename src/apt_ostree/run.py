"""The one way apt-ostree runs external programs."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from apt_ostree.errors import CommandError


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    input: str | None = None,
    capture: bool = True,
    what: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd`; raise CommandError carrying its output when it fails.

    Output is captured (stderr merged into stdout) so that a failure can show it;
    pass capture=False to let a long-running program talk to the terminal.
    """
    argv = [os.fspath(c) for c in cmd]
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = subprocess.run(
            argv,
            env=full_env,
            cwd=cwd,
            input=input,
            text=True,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.STDOUT if capture else None,
            check=False,
        )
    except FileNotFoundError as e:
        raise CommandError(f"{argv[0]} is not installed", argv) from e
    if proc.returncode != 0:
        output = proc.stdout or ""
        label = what or shlex.join(argv[:3])
        raise CommandError(f"{label} failed with exit status {proc.returncode}", argv, output)
    return proc
