"""What a change asks of the system, as plain data: the CLI builds a `Request`, the
bus carries it as the arguments of an OS method of apt-ostreed (docs/dbus.md), and
`apt_ostree.system.operations` carries it out, in the daemon or in-process.

No GLib here: the CLI imports this module on its fast path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, NamedTuple

from apt_ostree.errors import AptOstreeError

ACTION_PREFIX = "org.aptostree.dev."
# The polkit actions (data/polkit-1/actions/org.aptostree.dev.policy).
ACTIONS = (
    "install-uninstall-packages",
    "install-local-packages",
    "override",
    "deploy",
    "upgrade",
    "rebase",
    "rollback",
    "bootconfig",
    "cleanup",
    "repo-refresh",
    "cancel",
    "reload-daemon",
    "finalize-deployment",
    "apply-live",
)
# Every change of packages or base may carry these (rpm-ostree's UpdateDeployment model).
PACKAGE_MODIFIERS = {
    "install-packages": "as",
    "uninstall-packages": "as",
    "install-local-packages": "ah",
}
# Every change that makes a new deployment: on a booted system, a staged deployment
# that waits for FinalizeDeployment.
STAGING = {"lock-finalization": "b"}
# -C/--cache-only and --download-only of upgrade, deploy, rebase (system.upgrade.Fetch).
FETCH_OPTIONS = {"cache-only": "b", "download-only": "b"}
LAYERING_OPTIONS = {
    "allow-inactive": "b",
    "idempotent": "b",
    "cache-only": "b",
    "dry-run": "b",
    "download-only": "b",
}


class RequestError(AptOstreeError):
    """The request itself is wrong (no work was started): over the bus, InvalidArgument."""


# Plain classes, not dataclasses: this module is on the path of `apt-ostree status`,
# and importing `dataclasses` costs a tenth of what that command may take.


class Method(NamedTuple):
    """An OS method: its positional arguments and the options it knows (D-Bus types)."""

    name: str
    command: str  # how a person calls it: named in "Busy" messages and in status
    args: tuple[tuple[str, str], ...]
    options: dict[str, str]

    @property
    def signature(self) -> str:
        return "(" + "".join(t for _, t in self.args) + "a{sv})"


METHODS = {
    m.name: m
    for m in (
        Method(
            "Upgrade", "upgrade", (),
            {"allow-downgrade": "b", "check": "b", "preview": "b", **FETCH_OPTIONS,
             **PACKAGE_MODIFIERS, **STAGING},
        ),
        Method(
            "Deploy", "deploy", (("revision", "s"),),
            {"skip-branch-check": "b", "preview": "b", "disallow-downgrade": "b",
             **FETCH_OPTIONS, **PACKAGE_MODIFIERS},
        ),
        Method(
            "Rebase", "rebase", (("refspec", "s"), ("revision", "s")),
            {"branch": "s", "remote": "s", "skip-purge": "b", "disallow-downgrade": "b",
             "custom-origin-url": "s", "custom-origin-description": "s", **FETCH_OPTIONS,
             **PACKAGE_MODIFIERS, **STAGING},
        ),
        Method(
            "PkgChange", "package change", (("install", "as"), ("uninstall", "as")),
            {
                "install-local-packages": "ah",
                "uninstall-all": "b",
                "override-remove": "as",
                "override-replace-local": "ah",
                "override-replace": "as",
                "override-reset": "as",
                "override-reset-all": "b",
                "reset-layering": "b",
                "reset-initramfs": "b",
                "apply-live": "b",
                **LAYERING_OPTIONS,
                **STAGING,
            },
        ),
        Method("Rollback", "rollback", (), {}),
        Method("RegisterDriver", "deploy --register-driver", (),
               {"register-driver": "s", "driver-unit": "s"}),
        Method(
            "KernelArgs", "kargs", (("append", "as"), ("delete", "as")),
            {
                "append-if-missing": "as",
                "delete-if-present": "as",
                "replace": "as",
                "deploy-index": "i",
                "import-proc-cmdline": "b",
                **STAGING,
            },
        ),
        Method("SetInitramfsState", "initramfs", (("regenerate", "b"), ("args", "as")), STAGING),
        Method(
            "InitramfsEtc", "initramfs-etc",
            (("track", "as"), ("untrack", "as"), ("untrack-all", "b"), ("force-sync", "b")),
            STAGING,
        ),
        Method(
            "FinalizeDeployment", "finalize-deployment", (),
            {"checksum": "s", "allow-missing-checksum": "b", "allow-unlocked": "b"},
        ),
        Method("ApplyLive", "apply-live", (),
               {"target": "s", "reset": "b", "allow-replacement": "b"}),
        Method("Cleanup", "cleanup", (("what", "as"),), {}),
        Method("RefreshMd", "refresh-md", (), {"force": "b"}),
        # What it does is the daemon's AutomaticUpdatePolicy (docs/dbus.md).
        Method("AutomaticUpdateTrigger", "automatic update", (), {}),
    )
}  # fmt: skip

_PYTHON_TYPES: dict[str, type] = {"b": bool, "i": int, "s": str, "as": list, "ah": list}


class LocalPackage:
    """A .deb file the caller named: opened by the caller, read by whoever does the work.

    `label` is the path as the caller resolved it (for messages only: the daemon
    never opens it); `path` is what the in-process path reads, `fd` what crosses
    the bus.
    """

    def __init__(self, label: str, path: Path | None = None, fd: int | None = None) -> None:
        self.label = label
        self.path = path
        self.fd = fd

    def __repr__(self) -> str:
        return f"LocalPackage({self.label!r}, path={self.path!r}, fd={self.fd!r})"


def open_local_packages(paths: list[str]) -> list[LocalPackage]:
    """The files named on the command line, opened as the caller: a file the caller
    cannot read is refused here, before any request is made."""
    out = []
    for name in paths:
        path = Path(name).resolve()
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise RequestError(f"{path}: no such file") from None
        except OSError as e:
            raise RequestError(f"{path}: {e.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RequestError(f"{path}: not a regular file")
        out.append(LocalPackage(str(path), path=path, fd=fd))
    return out


class Request:
    """One call of an OS method: `args` in the method's order, `options` by name;
    an `ah` option's value is a list of LocalPackage."""

    def __init__(
        self,
        method: str,
        args: list[Any] | None = None,
        options: dict[str, Any] | None = None,
        osname: str | None = None,
    ) -> None:
        self.method = method
        self.args = list(args or [])
        self.options = dict(options or {})
        self.osname = osname

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.args!r}, {self.options!r}, osname={self.osname!r})"

    @property
    def spec(self) -> Method:
        return METHODS[self.method]

    def check_types(self) -> None:
        """Every argument and option of the method's type; unknown options refused."""
        spec = METHODS.get(self.method)
        if spec is None:
            raise RequestError(f'unknown method "{self.method}"')
        if len(self.args) != len(spec.args):
            raise RequestError(f"{self.method}: expected {len(spec.args)} argument(s)")
        for (name, kind), value in zip(spec.args, self.args, strict=True):
            if not _has_type(value, kind):
                raise RequestError(f'{self.method}: argument "{name}" must be of type {kind}')
        for key, value in self.options.items():
            if key not in spec.options:
                known = ", ".join(f'"{k}"' for k in spec.options) or "none"
                raise RequestError(f'{self.method}: unknown option "{key}" (known: {known})')
            if not _has_type(value, spec.options[key]):
                raise RequestError(
                    f'{self.method}: option "{key}" must be of type {spec.options[key]}'
                )

    def arg(self, name: str) -> Any:
        names = [n for n, _ in self.spec.args]
        return self.args[names.index(name)]

    def flag(self, name: str) -> bool:
        return bool(self.options.get(name, False))

    def strings(self, name: str) -> list[str]:
        return list(self.options.get(name, []))

    def local(self, name: str) -> list[LocalPackage]:
        return list(self.options.get(name, []))

    def close_files(self) -> None:
        """The file descriptors of the request's local packages are not needed any more."""
        for value in self.options.values():
            for item in value if isinstance(value, list) else []:
                if isinstance(item, LocalPackage) and item.fd is not None:
                    os.close(item.fd)
                    item.fd = None

    def actions(self) -> list[str]:
        """The polkit actions (docs/dbus.md) a caller needs for this request, in the
        order they are checked: all of them must be granted."""
        names: list[str] = []
        base = {
            "Upgrade": "upgrade",
            "Deploy": "deploy",
            "RegisterDriver": "deploy",
            "Rebase": "rebase",
            "Rollback": "rollback",
            "KernelArgs": "bootconfig",
            "SetInitramfsState": "bootconfig",
            "InitramfsEtc": "bootconfig",
            "Cleanup": "cleanup",
            "RefreshMd": "repo-refresh",
            "FinalizeDeployment": "finalize-deployment",
            "ApplyLive": "apply-live",
            "AutomaticUpdateTrigger": "upgrade",
        }.get(self.method)
        if base is not None:
            names.append(base)
        installs = self.strings("install-packages") + self.strings("uninstall-packages")
        if self.method == "PkgChange":
            installs += list(self.args[0]) + list(self.args[1])
            if self.flag("uninstall-all") or self.flag("reset-layering"):
                installs.append("*")
        if installs:
            names.append("install-uninstall-packages")
        if self.local("install-local-packages"):
            names.append("install-local-packages")
        if any(
            self.options.get(k)
            for k in ("override-remove", "override-replace-local", "override-replace",
                      "override-reset", "override-reset-all")
        ):  # fmt: skip
            names.append("override")
        if self.flag("reset-initramfs"):  # as `initramfs --disable`
            names.append("bootconfig")
        if self.method == "PkgChange" and self.flag("apply-live"):
            names.append("apply-live")
        if not names:  # a PkgChange that asks for nothing: refused later, as empty
            names.append("install-uninstall-packages")
        assert set(names) <= set(ACTIONS), names
        return [ACTION_PREFIX + n for n in dict.fromkeys(names)]


def _has_type(value: Any, kind: str) -> bool:
    expected = _PYTHON_TYPES[kind]
    # bool is an int in Python; a{sv} keeps them apart, and so must we.
    if type(value) is not expected:
        return False
    if isinstance(value, list):
        item = LocalPackage if kind == "ah" else str
        return all(isinstance(v, item) for v in value)
    return True
