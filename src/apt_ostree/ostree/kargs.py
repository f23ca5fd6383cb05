"""Kernel arguments as ostree edits them, in pure Python.

`OSTree.KernelArgs` cannot be constructed through GI on libostree 2022.7, so
the rules of ostree's `ostree-kernel-args.c` (which rpm-ostree uses) are here:
arguments keep their order; a key may appear several times; `key` and `key=`
differ; a value with spaces is written in double quotes, and input is split on
spaces outside double quotes (as ostree >= 2024.5 does).
"""

from __future__ import annotations

from dataclasses import dataclass

from apt_ostree.errors import AptOstreeError

# libostree writes `ostree=/ostree/boot.N/...` itself on every deployment.
OSTREE_KEY = "ostree"


class KargsError(AptOstreeError):
    pass


@dataclass(frozen=True)
class Karg:
    """One kernel argument: `key`, `key=` or `key=value` (value as written, quotes kept)."""

    key: str
    value: str | None

    def __str__(self) -> str:
        return self.key if self.value is None else f"{self.key}={self.value}"

    @classmethod
    def parse(cls, text: str) -> Karg:
        key, sep, value = text.partition("=")
        if not key:
            raise KargsError(f'invalid kernel argument "{text}": it has no key')
        return cls(key, _quote(value) if sep else None)

    def has_value(self, value: str | None) -> bool:
        """Whether this argument has `value`, quoted or not."""
        if self.value is None or value is None:
            return self.value is value
        return _unquote(self.value) == _unquote(value)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _quote(value: str) -> str:
    """Quote a value with spaces so that the kernel (and ostree) read it as one argument."""
    if " " in value and '"' not in value:
        return f'"{value}"'
    return value


def split_kargs(text: str) -> list[str]:
    """Split a kernel command line on spaces that are not inside double quotes."""
    args: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text.strip():
        if char == '"':
            quoted = not quoted
        if char.isspace() and not quoted:
            if current:
                args.append("".join(current))
                current = []
            continue
        current.append(char)
    if quoted:
        raise KargsError(f"unbalanced double quote in kernel arguments: {text.strip()}")
    if current:
        args.append("".join(current))
    return args


class KernelArgs:
    """An ordered list of kernel arguments with ostree's editing rules."""

    def __init__(self, kargs: list[Karg] | None = None) -> None:
        self.kargs: list[Karg] = list(kargs or [])

    @classmethod
    def from_string(cls, text: str | None) -> KernelArgs:
        return cls([Karg.parse(arg) for arg in split_kargs(text or "")])

    def __str__(self) -> str:
        return " ".join(map(str, self.kargs))

    def to_list(self) -> list[str]:
        return [str(k) for k in self.kargs]

    def without_ostree(self) -> list[str]:
        """The arguments apt-ostree manages: all but libostree's `ostree=`."""
        return [str(k) for k in self.kargs if k.key != OSTREE_KEY]

    def _indexes(self, key: str) -> list[int]:
        return [i for i, k in enumerate(self.kargs) if k.key == key]

    def contains(self, key: str) -> bool:
        return bool(self._indexes(key))

    def _values(self, key: str) -> str:
        return " ".join(str(self.kargs[i]) for i in self._indexes(key))

    def append(self, arg: str) -> None:
        self.kargs.append(Karg.parse(arg))

    def append_if_missing(self, arg: str) -> None:
        """Append unless an argument with this key is already there (any value)."""
        karg = Karg.parse(arg)
        if not self.contains(karg.key):
            self.kargs.append(karg)

    def delete(self, arg: str) -> None:
        karg = Karg.parse(arg)
        indexes = self._indexes(karg.key)
        if not indexes:
            raise KargsError(f'no karg "{arg}" to delete')
        matching = [i for i in indexes if self.kargs[i].has_value(karg.value)]
        if len(indexes) == 1 and (karg.value is None or matching):
            del self.kargs[indexes[0]]
            return
        if karg.value is None and not matching:
            raise KargsError(
                f'karg "{karg.key}" has several values ({self._values(karg.key)});'
                f" give KEY=VALUE to delete one"
            )
        if not matching:
            raise KargsError(f'no karg "{arg}" to delete')
        del self.kargs[matching[0]]

    def delete_if_present(self, arg: str) -> None:
        """Delete `arg` if it is there; nothing if the key, or this KEY=VALUE, is not."""
        karg = Karg.parse(arg)
        indexes = self._indexes(karg.key)
        if not indexes:
            return
        if karg.value is not None and not any(self.kargs[i].has_value(karg.value) for i in indexes):
            return
        self.delete(arg)

    def replace(self, arg: str) -> None:
        """`KEY=NEW` (KEY has one value), `KEY=OLD=NEW`, or `KEY` (drop the value)."""
        key, sep, rest = arg.partition("=")
        if not key:
            raise KargsError(f'invalid kernel argument "{arg}": it has no key')
        indexes = self._indexes(key)
        if not indexes:
            raise KargsError(f'no karg "{key}" to replace')
        if sep and "=" in rest:
            old, _, new = rest.partition("=")
            matching = [i for i in indexes if self.kargs[i].has_value(old)]
            if not matching:
                raise KargsError(f'no karg "{key}={old}" to replace')
            self.kargs[matching[0]] = Karg(key, _quote(new))
            return
        if len(indexes) > 1:
            raise KargsError(
                f'karg "{key}" has several values ({self._values(key)}); use --replace KEY=OLD=NEW'
            )
        self.kargs[indexes[0]] = Karg(key, _quote(rest) if sep else None)
