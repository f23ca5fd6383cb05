"""The treefile's customizations of a bootstrapped tree, before the layout conversion:
add-files, units, default-target, postprocess scripts, remove-files."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from apt_ostree.compose.treefile import Treefile
from apt_ostree.debian.dpkg import DPKG_CAPS
from apt_ostree.errors import AptOstreeError, CommandError
from apt_ostree.reporter import Reporter
from apt_ostree.sandbox import run_in_tree
from apt_ostree.treefs import Tree


class PostprocessScriptError(AptOstreeError):
    pass


def _inside(root: Path, path: str) -> Path:
    """`path` (absolute, inside the tree) as a host path under `root`; no escaping by `..`."""
    rel = Path(path.lstrip("/"))
    if ".." in rel.parts:
        raise AptOstreeError(f"path {path!r} leaves the tree")
    return root / rel


def add_files(root: Path, files: list[tuple[Path, str]]) -> None:
    """Copy the treefile's files (trusted, on the host) into the tree, whose paths
    resolve inside it: a package's symlink on the way is refused, not followed."""
    with Tree(root) as tree:
        for src, dest in files:
            rel = str(_inside(root, dest).relative_to(root))
            tree.makedirs(os.path.dirname(rel))
            if src.is_dir() and not src.is_symlink():
                tree.makedirs(rel)
                for path in sorted(src.rglob("*")):
                    _add_file(tree, path, f"{rel}/{path.relative_to(src)}")
            else:
                _add_file(tree, src, rel)


def _add_file(tree: Tree, src: Path, rel: str) -> None:
    st = src.lstat()
    if stat.S_ISDIR(st.st_mode):
        tree.makedirs(rel)
        return
    if tree.exists(rel) and not tree.is_dir(rel):
        tree.unlink(rel)
    if stat.S_ISLNK(st.st_mode):
        tree.symlink(os.readlink(src), rel)
    else:
        tree.write_bytes(rel, src.read_bytes(), stat.S_IMODE(st.st_mode))


def remove_files(root: Path, paths: list[str]) -> None:
    with Tree(root) as tree:
        for path in paths:
            rel = str(_inside(root, path).relative_to(root))
            if tree.exists(rel):
                tree.remove(rel)


# `systemctl --root=/` only makes symlinks in root's own /etc/systemd: measured,
# it needs no capability.
SYSTEMCTL_CAPS: tuple[str, ...] = ()


def enable_units(root: Path, units: list[str], default_target: str | None) -> None:
    if units:
        run_in_tree(
            root, ["systemctl", "--root=/", "enable", *units], what="systemctl enable",
            caps=SYSTEMCTL_CAPS,
        )  # fmt: skip
    if default_target:
        run_in_tree(
            root, ["systemctl", "--root=/", "set-default", default_target], what="set-default",
            caps=SYSTEMCTL_CAPS,
        )  # fmt: skip


def run_postprocess_scripts(
    root: Path,
    scripts: list[tuple[str, str]],
    reporter: Reporter,
    env: dict[str, str] | None = None,
) -> None:
    """Run each (name, content) script with the tree as /, without network.

    A script with no #! line runs under /bin/sh -e. A failing script stops the
    compose with its output shown.
    """
    for name, content in scripts:
        reporter.task_begin(f"Running {name}")
        with tempfile.NamedTemporaryFile("w", prefix="apt-ostree-postprocess-", delete=False) as f:
            f.write(content)
            script = Path(f.name)
        try:
            script.chmod(0o755)
            inner = "/tmp/apt-ostree-postprocess"
            argv = [inner] if content.startswith("#!") else ["/bin/sh", "-e", inner]
            try:
                # The treefile's scripts do what maintainer scripts do: dpkg's powers.
                output = run_in_tree(
                    root, argv, what=name, caps=DPKG_CAPS, env=env, ro_binds=[(script, inner)]
                )
            except CommandError as e:
                shown = e.output.rstrip() or "(no output)"
                raise PostprocessScriptError(f"{e}; its output:\n{shown}") from e
        finally:
            script.unlink()
        if output.strip():
            reporter.info(output.rstrip())
        reporter.task_end()


def treefile_scripts(treefile: Treefile) -> list[tuple[str, str]]:
    # As rpm-ostree: the inline scripts first, then postprocess-script.
    scripts = [(f"postprocess script #{i}", c) for i, c in enumerate(treefile.postprocess, 1)]
    if treefile.postprocess_script is not None:
        script = treefile.postprocess_script
        scripts.append((f"postprocess-script {script.name}", script.read_text()))
    return scripts


def customize_tree(
    root: Path, treefile: Treefile, reporter: Reporter, source_date_epoch: int | None = None
) -> None:
    add_files(root, treefile.add_files)
    enable_units(root, treefile.units, treefile.default_target)
    env = {"SOURCE_DATE_EPOCH": str(source_date_epoch)} if source_date_epoch is not None else None
    run_postprocess_scripts(root, treefile_scripts(treefile), reporter, env)
    remove_files(root, treefile.remove_files)
