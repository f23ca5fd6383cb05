"""The resolver child process and the JSON protocol between it and its caller.

libapt-pkg's configuration is process-global and is read from the host's
/etc/apt on initialisation, so every APT operation runs in a child process
(`python -m apt_ostree.debian.aptchild`) that points `APT_CONFIG` at a file in
the caller's state directory (aptstate.py) before apt_pkg is initialised. The
parent sends one JSON request on the child's stdin (its "op" says what to do:
"tree", "layer", "digests", "search", "refresh" or "fetch"); the child answers with JSON
lines on its stdout: `{"progress": ...}` while fetching, then one answer or
`{"error": ..., "message": ...}`. Anything on the child's stderr is a bug's
traceback and is shown as such.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from apt_ostree.debian.aptstate import locked_statedir, prepare_statedir
from apt_ostree.debian.fetch import FetchError, download
from apt_ostree.debian.indexes import drop_lists, fetch_indexes, update_lists
from apt_ostree.debian.indexsearch import search_cache
from apt_ostree.debian.layerdebs import local_repo
from apt_ostree.debian.layersolver import resolve_layer_marked
from apt_ostree.debian.lockpins import index_digests
from apt_ostree.debian.treesolver import resolve_marked
from apt_ostree.errors import ResolveError, SourceError

if TYPE_CHECKING:
    from apt_ostree.reporter import Reporter

_CHILD_MODULE = "apt_ostree.debian.aptchild"
_ERRORS: dict[str, type[ResolveError | SourceError]] = {
    "ResolveError": ResolveError,
    "SourceError": SourceError,
    "FetchError": FetchError,
}


class ResolverCrash(RuntimeError):
    """The resolver process died without an answer: a bug, shown with its traceback."""


def ask_child(request: dict[str, Any], reporter: Reporter | None) -> dict[str, Any]:
    """Run `request` in the child; its answer, or its user-facing error raised."""
    reply = call_child(request, reporter)
    if "error" in reply:
        raise _ERRORS[reply["error"]](reply["message"])
    return reply


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The child imports this package from wherever the parent did.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    # The child classifies apt's messages, so they must be untranslated.
    env["LC_ALL"] = "C.UTF-8"
    env.pop("APT_CONFIG", None)
    return env


def call_child(request: dict[str, Any], reporter: Reporter | None) -> dict[str, Any]:
    # stderr goes to a file: a pipe could fill up while we read stdout.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog:
        proc = subprocess.Popen(
            [sys.executable, "-m", _CHILD_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errlog,
            env=_child_env(),
            text=True,
            encoding="utf-8",
        )
        try:
            reply = _exchange(proc, request, reporter)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        status = proc.wait()
        if reply is None or status != 0:
            errlog.seek(0)
            raise ResolverCrash(
                f"the resolver process failed (exit status {status}):\n{errlog.read()}"
            )
    return reply


def _exchange(
    proc: subprocess.Popen[str], request: dict[str, Any], reporter: Reporter | None
) -> dict[str, Any] | None:
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(request))
        proc.stdin.close()
    except BrokenPipeError:
        # The child died at startup; its stderr tells why.
        return None
    reply = None
    progressed = False
    for line in proc.stdout:
        message = json.loads(line)
        if "progress" in message:
            if reporter is not None:
                reporter.progress(message["progress"])
                progressed = True
        else:
            reply = message
    if progressed and reporter is not None:
        reporter.progress_done()
    return reply


# --- in the child ---------------------------------------------------------------------
#
# apt_pkg is imported lazily, in the child only, so that importing this module
# never initialises libapt-pkg in the caller's process.


def _run_op(request: dict[str, Any], out: IO[str]) -> dict[str, Any]:
    import apt_pkg

    op = request["op"]
    statedir = Path(request["statedir"])
    if op == "tree":
        fetch_indexes(request["stanzas"], out)
        return {"packages": resolve_marked(request)}
    if op == "layer":
        local_debs = [*request["local_debs"], *request.get("replace_local", [])]
        local = local_repo(statedir, local_debs, request["arch"])
        update_lists(request["stanzas"], out, refresh=request["refresh"], local=local)
        return {"plan": resolve_layer_marked(request, local)}
    if op == "search":
        update_lists(request["stanzas"], out, refresh=False)
        return {"results": search_cache(request["terms"], request["arch"])}
    if op == "digests":
        update_lists(request["stanzas"], out, refresh=False)
        return index_digests(request)
    if op == "refresh":
        if request["force"]:
            drop_lists(statedir)
        fetch_indexes(request["stanzas"], out)
        return {"refreshed": True}
    raise apt_pkg.Error(f"unknown request {op!r}")


def _child_main() -> int:
    # The protocol gets its own copy of stdout; fd 1 then points to stderr so
    # that whatever libapt-pkg prints cannot corrupt the JSON stream.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    request = json.load(sys.stdin)
    request.setdefault("op", "tree")
    reply: dict[str, Any]
    if request["op"] == "fetch":
        try:
            reply = download(request, out)
        except FetchError as e:
            reply = {"error": type(e).__name__, "message": str(e)}
    else:
        with locked_statedir(Path(request["statedir"])):
            conf = prepare_statedir(request)
            # libapt-pkg reads APT_CONFIG first, and our file moves Dir::Etc::parts
            # away from the host's /etc/apt/apt.conf.d before that is read.
            os.environ["APT_CONFIG"] = str(conf)
            import apt_pkg

            apt_pkg.init_config()
            recommends = request.get("recommends", False)
            apt_pkg.config.set("APT::Install-Recommends", "true" if recommends else "false")
            if "status" in request:
                # The base commit's dpkg database: what is installed.
                apt_pkg.config.set("Dir::State::status", request["status"])
            apt_pkg.init_system()
            try:
                reply = _run_op(request, out)
            except (ResolveError, SourceError) as e:
                reply = {"error": type(e).__name__, "message": str(e)}
    out.write(json.dumps(reply) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
