"""Man pages and bash completion, generated from the parser at build time
(debian/rules): `python3 -m apt_ostree.cli.docgen OUTDIR` writes OUTDIR/man/*.8
(apt-ostree(8) and apt-ostree-COMMAND(8) for each command) and
OUTDIR/bash-completion/apt-ostree."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from apt_ostree import __version__
from apt_ostree.cli.main import ALIASES, build_parser
from apt_ostree.cli.options import subparsers, walk

Path_ = tuple[str, ...]

OVERVIEW = """\
.B apt-ostree
manages a Debian system whose operating system is an immutable OSTree commit,
booted from an atomic deployment.
Every change (upgrade, rebase, package layering, kernel arguments) makes a new
deployment that is used from the next boot on and can be rolled back.
Its commands, flags, exit codes and
.B status \\-\\-json
keys are those of rpm-ostree.
.PP
Without
.BR \\-\\-sysroot ,
the commands act on the booted system, through the
.BR apt-ostreed (8)
daemon (changes need root, or polkit's authorization); with it, in-process on
the offline OSTree sysroot at
.IR SYSROOT .
The global options may be given before or after the command.
"""
EXIT_STATUS = """\
.SH EXIT STATUS
0 on success; 1 on an error, including a bad command line; 77 where an
.B \\-\\-unchanged\\-exit\\-77
or
.B \\-\\-pending\\-exit\\-77
option asks for it and nothing changed (or something is pending), and for
.B upgrade \\-\\-check
and
.B \\-\\-preview
when no update is available.
"""


def _roff(text: str) -> str:
    out = text.replace("\\", "\\\\").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line
                     for line in out.splitlines())  # fmt: skip


def _visible(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a for a in p._actions
        if a.option_strings and a.help != argparse.SUPPRESS and "--help" not in a.option_strings
    ]  # fmt: skip


def _positionals(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a for a in p._actions
        if not a.option_strings and not isinstance(a, argparse._SubParsersAction)
    ]  # fmt: skip


def _option_label(a: argparse.Action) -> str:
    names = ", ".join(f"\\fB{_roff(s)}\\fR" for s in a.option_strings)
    if a.nargs == 0:
        return names
    metavar = a.metavar or a.dest.upper()
    return f"{names} \\fI{_roff(str(metavar))}\\fR"


def _options_section(p: argparse.ArgumentParser) -> list[str]:
    lines = []
    for a in _visible(p):
        lines += [".TP", _option_label(a), _roff(a.help or "")]
    return lines


def _help_of(path: Path_, parent: argparse.ArgumentParser) -> str:
    for a in parent._actions:
        if isinstance(a, argparse._SubParsersAction):
            for choice in a._choices_actions:
                if choice.dest == path[-1]:
                    return str(choice.help or "")
    return ""


def _synopsis(path: Path_, p: argparse.ArgumentParser) -> str:
    words = [f"\\fBapt-ostree {_roff(' '.join(path))}\\fR", "[\\fIOPTIONS\\fR]"]
    for a in _positionals(p):
        metavar = _roff(str(a.metavar or a.dest.upper()))
        words.append(f"[\\fI{metavar}\\fR...]" if a.nargs in ("*", "?") else f"\\fI{metavar}\\fR")
    if any(True for _ in subparsers(p)):
        words.insert(1, "\\fICOMMAND\\fR")
    return " ".join(words)


def _header(name: str, summary: str) -> list[str]:
    return [
        f'.TH {name.upper()} 8 "" "apt-ostree {__version__}" "System Administration"',
        ".SH NAME",
        f"{_roff(name)} \\- {_roff(summary)}",
    ]


def command_page(path: Path_, p: argparse.ArgumentParser, summary: str) -> str:
    """apt-ostree-COMMAND(8): the command, its options and those of its subcommands."""
    lines = _header("apt-ostree-" + path[0], summary)
    lines += [".SH SYNOPSIS", _synopsis(path, p), ".SH DESCRIPTION",
              _roff(p.description or summary[:1].upper() + summary[1:] + ".")]  # fmt: skip
    options = _options_section(p)
    if options:
        lines += [".SH OPTIONS", *options]
    for name, child in subparsers(p):
        title = _roff(" ".join((*path, name)).upper())
        lines += [f'.SH "{title}"', _synopsis((*path, name), child),
                  ".PP", _roff(child.description or _help_of((*path, name), p))]  # fmt: skip
        lines += _options_section(child)
    lines += [".SH SEE ALSO", "\\fBapt-ostree\\fR(8)", ""]
    return "\n".join(lines)


def main_page(parser: argparse.ArgumentParser) -> str:
    lines = _header("apt-ostree", "atomic, image-based Debian systems with package layering")
    lines += [".SH SYNOPSIS", "\\fBapt-ostree\\fR [\\fIOPTIONS\\fR] \\fICOMMAND\\fR ...",
              ".SH DESCRIPTION", OVERVIEW.rstrip(), ".SH OPTIONS", *_options_section(parser),
              ".SH COMMANDS"]  # fmt: skip
    for name, _ in subparsers(parser):
        lines += [".TP", f"\\fB{_roff(name)}\\fR", f"{_roff(_help_of((name,), parser))}"
                  f" (\\fBapt-ostree-{_roff(name)}\\fR(8))"]  # fmt: skip
    aliases = ", ".join(
        f"\\fB{_roff(a)}\\fR (\\fB{_roff(c)}\\fR)" for a, c in sorted(ALIASES.items())
    )
    lines += [".PP", f"Aliases kept for rpm-ostree's users: {aliases}.", EXIT_STATUS.rstrip(),
              ".SH SEE ALSO", "\\fBapt-ostreed\\fR(8), \\fBostree\\fR(1)", ""]  # fmt: skip
    return "\n".join(lines)


def _takes_value(p: argparse.ArgumentParser) -> list[str]:
    return [s for a in p._actions if a.option_strings and a.nargs != 0 for s in a.option_strings]


def _takes_path(p: argparse.ArgumentParser) -> list[str]:
    return [s for a in p._actions if a.type is Path for s in a.option_strings]


def bash_completion(parser: argparse.ArgumentParser) -> str:
    """A bash completion function with a table per command path: its subcommands,
    its options, which options take a value and which take a file."""
    tables: dict[str, dict[str, str]] = {"subs": {}, "opts": {}, "vals": {}, "files": {}}
    for path, p in [((), parser), *walk(parser)]:
        key = " ".join(("_", *path))  # bash refuses an empty key: "_" is the top level
        visible = [s for a in _visible(p) for s in a.option_strings]
        tables["subs"][key] = " ".join(name for name, _ in subparsers(p))
        tables["opts"][key] = " ".join(visible)
        tables["vals"][key] = " ".join(_takes_value(p))
        tables["files"][key] = " ".join(_takes_path(p))
    tables["subs"]["_"] += " " + " ".join(sorted(ALIASES))
    lines = [
        "# bash completion for apt-ostree (generated from its parser)",
        "_apt_ostree() {",
        "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}",
    ]
    for name, table in tables.items():
        lines.append(f"    local -A {name}=(")
        lines += [f'        ["{k}"]="{v}"' for k, v in table.items()]
        lines.append("    )")
    aliases = " ".join(f'["{a}"]="{c}"' for a, c in sorted(ALIASES.items()))
    lines += [
        f"    local -A aliases=({aliases})",
        "    local path=_ word i skip=0",
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        "        word=${COMP_WORDS[i]}",
        "        if ((skip)); then skip=0; continue; fi",
        "        if [[ $word == -* ]]; then",
        '            [[ $word != *=* && " ${vals[$path]} ${vals[_]} " == *" $word "* ]] && skip=1',
        "            continue",
        "        fi",
        "        [[ $path == _ && -n ${aliases[$word]} ]] && word=${aliases[$word]}",
        '        local next="$path $word"',
        '        [[ " ${subs[$path]} " == *" $word "* && -n ${opts[$next]+x} ]] && path=$next',
        "    done",
        '    if [[ " ${files[$path]} ${files[_]} " == *" $prev "* ]]; then',
        '        COMPREPLY=($(compgen -f -- "$cur")); return',
        "    fi",
        '    if [[ " ${vals[$path]} ${vals[_]} " == *" $prev "* ]]; then',
        "        COMPREPLY=(); return",
        "    fi",
        "    if [[ $cur == -* ]]; then",
        '        COMPREPLY=($(compgen -W "${opts[$path]}" -- "$cur"))',
        "    else",
        '        COMPREPLY=($(compgen -W "${subs[$path]}" -- "$cur"))',
        "    fi",
        "}",
        "complete -F _apt_ostree apt-ostree",
        "",
    ]
    return "\n".join(lines)


def write_all(out: Path) -> list[Path]:
    parser = build_parser()
    written = []
    man = out / "man"
    man.mkdir(parents=True, exist_ok=True)
    pages = {"apt-ostree.8": main_page(parser)}
    for name, p in subparsers(parser):
        pages[f"apt-ostree-{name}.8"] = command_page((name,), p, _help_of((name,), parser))
    for filename, text in pages.items():
        (man / filename).write_text(text)
        written.append(man / filename)
    completion = out / "bash-completion" / "apt-ostree"
    completion.parent.mkdir(parents=True, exist_ok=True)
    completion.write_text(bash_completion(parser))
    written.append(completion)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m apt_ostree.cli.docgen OUTDIR", file=sys.stderr)
        return 1
    for path in write_all(Path(argv[0])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
