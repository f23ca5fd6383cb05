"""`status -J EXPRESSION`: the JSONPath that rpm-ostree takes (json-glib's JsonPath).

The same subset as json-glib: `$` the root, `.name` and `['name']` members,
`..name` recursive descent, `*` every member or element, `[n]` (negative from the
end), `[a,b]` unions and `[start:end:step]` slices. Filters `?()` and scripts `()`
are refused, as json-glib refuses them. The result is the array of matches.
"""

from __future__ import annotations

import re
from typing import Any

from apt_ostree.errors import AptOstreeError

_TOKEN = re.compile(
    r"""\.\.(?P<deep>[A-Za-z0-9_-]+|\*)
      | \.(?P<name>[A-Za-z0-9_-]+|\*)
      | \[(?P<sub>[^\]]*)\]""",
    re.VERBOSE,
)
Step = tuple[str, Any]


class JsonPathError(AptOstreeError):
    pass


def _subscript(text: str, expression: str) -> Step:
    text = text.strip()
    if text.startswith(("?", "(")):
        raise JsonPathError(
            f'JSONPath "{expression}": filter and script expressions are not supported'
        )
    if text == "*":
        return ("all", None)
    if ":" in text and not text.startswith(("'", '"')):
        parts = text.split(":")
        if len(parts) > 3:
            raise JsonPathError(f'JSONPath "{expression}": bad slice [{text}]')
        try:
            return ("slice", slice(*(int(p) if p.strip() else None for p in parts)))
        except ValueError:
            raise JsonPathError(f'JSONPath "{expression}": bad slice [{text}]') from None
    keys: list[str | int] = []
    for item in text.split(","):
        item = item.strip()
        if len(item) >= 2 and item[0] == item[-1] and item[0] in "'\"":
            keys.append(item[1:-1])
        else:
            try:
                keys.append(int(item))
            except ValueError:
                raise JsonPathError(f'JSONPath "{expression}": bad subscript [{text}]') from None
    return ("keys", keys)


def compile_path(expression: str) -> list[Step]:
    if not expression.startswith("$"):
        raise JsonPathError(f'JSONPath "{expression}": must start with $')
    steps: list[Step] = []
    pos = 1
    while pos < len(expression):
        m = _TOKEN.match(expression, pos)
        if m is None:
            raise JsonPathError(f'JSONPath "{expression}": unexpected "{expression[pos:]}"')
        if m["deep"] is not None:
            steps.append(("deep", m["deep"]))
        elif m["name"] is not None:
            steps.append(("all", None) if m["name"] == "*" else ("keys", [m["name"]]))
        else:
            steps.append(_subscript(m["sub"], expression))
        pos = m.end()
    return steps


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return list(node.values())
    if isinstance(node, list):
        return list(node)
    return []


def _descendants(node: Any) -> list[Any]:
    out = [node]
    for child in _children(node):
        out += _descendants(child)
    return out


def _apply(step: Step, node: Any) -> list[Any]:
    kind, arg = step
    if kind == "all":
        return _children(node)
    if kind == "slice":
        return list(node[arg]) if isinstance(node, list) else []
    if kind == "deep":
        found = []
        for d in _descendants(node):
            found += _children(d) if arg == "*" else _apply(("keys", [arg]), d)
        return found
    return [node[key] for key in arg if _has(node, key)]


def _has(node: Any, key: str | int) -> bool:
    if isinstance(node, dict):
        return isinstance(key, str) and key in node
    return isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node)


def query(document: Any, expression: str) -> list[Any]:
    """The matches of `expression` in `document`, in document order."""
    nodes = [document]
    for step in compile_path(expression):
        nodes = [found for node in nodes for found in _apply(step, node)]
    return nodes
