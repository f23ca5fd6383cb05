"""Build a Debian tree from nothing with mmdebstrap."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from apt_ostree.compose import accounts
from apt_ostree.debian.packages import PackageInfo
from apt_ostree.errors import CommandError, SourceError
from apt_ostree.reporter import Reporter
from apt_ostree.run import run

# Debian's kernel packages call /etc/kernel/postinst.d/dracut (and dracut's own
# postinst calls it by path); building the initramfs there is wasted work since
# postprocess builds it once the tree is complete, without hostonly.
KERNEL_HOOK = "/etc/kernel/postinst.d/dracut"
KERNEL_HOOK_DIVERTED = "/etc/kernel/postinst.d/dracut.apt-ostree"

DOC_EXCLUDES = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/lintian/*",
)


@dataclass
class BootstrapRequest:
    suite: str
    arch: str
    sources_file: Path
    packages: Sequence[PackageInfo]
    requested: Sequence[str]
    recommends: bool
    documentation: bool
    cachedir: Path | None
    # The previous commit's account files (compose/accounts.py), put in /etc first.
    accounts_seed: Path | None = None
    source_date_epoch: int | None = None


def _divert_kernel_hook() -> str:
    hook = shlex.quote(KERNEL_HOOK)
    return (
        f'chroot "$1" dpkg-divert --quiet --local --rename --add'
        f" --divert {shlex.quote(KERNEL_HOOK_DIVERTED)} {hook}"
        f' && mkdir -p "$1/etc/kernel/postinst.d"'
        f" && printf '#!/bin/sh\\nexit 0\\n' > \"$1\"{hook}"
        f' && chmod 755 "$1"{hook}'
    )


def _restore_kernel_hook() -> str:
    hook = shlex.quote(KERNEL_HOOK)
    return f'rm -f "$1"{hook} && chroot "$1" dpkg-divert --quiet --local --rename --remove {hook}'


def _cache_in(cachedir: Path) -> str:
    c = shlex.quote(str(cachedir))
    return (
        'mkdir -p "$1/var/cache/apt/archives"'
        f' && for f in {c}/*.deb; do [ -e "$f" ] || continue;'
        ' ln -f "$f" "$1/var/cache/apt/archives/" 2>/dev/null'
        ' || cp "$f" "$1/var/cache/apt/archives/"; done'
    )


def _cache_out(cachedir: Path) -> str:
    c = shlex.quote(str(cachedir))
    return (
        'for f in "$1"/var/cache/apt/archives/*.deb; do [ -e "$f" ] || continue;'
        f' n="${{f##*/}}"; [ -e {c}/"$n" ]'
        f' || {{ cp "$f" {c}/"$n.tmp" && mv -f {c}/"$n.tmp" {c}/"$n"; }}; done; true'
    )


def _seed_accounts(seed: Path) -> str:
    """Copy the seeded account files into the new tree's /etc before any package is
    installed: base-passwd's preinst keeps an existing /etc/passwd and /etc/group."""
    steps = ['mkdir -p "$1/etc"']
    shadow_gid = (
        accounts.parse_ids((seed / "group").read_text()).get("shadow", 0)
        if (seed / "group").is_file()
        else 0
    )
    for name in accounts.SEEDED:
        if (seed / name).is_file():
            mode, gid = ("0640", shadow_gid) if name.endswith("shadow") else ("0644", 0)
            src = shlex.quote(str(seed / name))
            steps.append(f'install -m {mode} -o 0 -g {gid} {src} "$1/etc/{name}"')
    return " && ".join(steps)


def _mark_auto(requested: Sequence[str], packages: Sequence[PackageInfo]) -> str | None:
    """Everything we name explicitly becomes 'manual' in apt; restore apt's view."""
    auto = sorted({p.name for p in packages} - set(requested))
    if not auto:
        return None
    names = " ".join(shlex.quote(n) for n in auto)
    return f'[ ! -x "$1/usr/bin/apt-mark" ] || chroot "$1" apt-mark auto {names} >/dev/null'


def mmdebstrap_argv(req: BootstrapRequest, target: Path) -> list[str]:
    # The exact versions resolved beforehand are installed, so that the tree
    # matches what `--dry-run` printed and what the no-op check compared.
    include = ",".join(f"{p.name}={p.version}" for p in req.packages)
    recommends = "true" if req.recommends else "false"
    argv = [
        "mmdebstrap",
        "--mode=root",
        "--variant=essential",
        "--format=directory",
        f"--architectures={req.arch}",
        f'--aptopt=APT::Install-Recommends "{recommends}"',
        "--skip=download/empty",
        "--skip=essential/unlink",
        f"--essential-hook={_divert_kernel_hook()}",
        f"--customize-hook={_restore_kernel_hook()}",
    ]
    if include:
        argv.append(f"--include={include}")
    mark = _mark_auto(req.requested, req.packages)
    if mark:
        argv.append(f"--customize-hook={mark}")
    if not req.documentation:
        argv += [f"--dpkgopt={o}" for o in DOC_EXCLUDES]
    if req.accounts_seed is not None:
        argv.append(f"--setup-hook={_seed_accounts(req.accounts_seed)}")
    if req.cachedir is not None:
        req.cachedir.mkdir(parents=True, exist_ok=True)
        argv.append(f"--setup-hook={_cache_in(req.cachedir)}")
        argv.append(f"--customize-hook={_cache_out(req.cachedir)}")
    argv += [req.suite, str(target), str(req.sources_file)]
    return argv


def bootstrap(req: BootstrapRequest, target: Path, reporter: Reporter) -> None:
    """Run mmdebstrap into `target` (which must not exist or be empty)."""
    reporter.task_begin(f"Bootstrapping {len(req.packages)} packages with mmdebstrap")
    cached_before = _cached_debs(req.cachedir)
    try:
        env = {}
        if req.source_date_epoch is not None:
            # mmdebstrap passes it on to dpkg and the maintainer scripts.
            env["SOURCE_DATE_EPOCH"] = str(req.source_date_epoch)
        run(mmdebstrap_argv(req, target), env=env, what="mmdebstrap")
    except CommandError as e:
        tail = "\n".join(e.output.strip().splitlines()[-15:])
        if "NO_PUBKEY" in e.output or "is not signed" in e.output:
            raise SourceError(f"mmdebstrap could not verify a source:\n{tail}") from e
        raise CommandError(f"mmdebstrap failed:\n{tail}", e.cmd, e.output) from e
    if req.cachedir is None:
        reporter.task_end()
    else:
        fetched = len(_cached_debs(req.cachedir) - cached_before)
        reporter.task_end(f"{fetched} packages fetched, {len(req.packages) - fetched} from cache")


def _cached_debs(cachedir: Path | None) -> set[str]:
    if cachedir is None or not cachedir.is_dir():
        return set()
    return {p.name for p in cachedir.glob("*.deb")}
