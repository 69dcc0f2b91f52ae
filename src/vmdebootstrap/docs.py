"""Man pages and bash completion for vmdebootstrap (and its verify subcommand)
and vmdebootstrap-boottest, made when the Debian package is built from what
their --help is made from (the option table, each command's parser).

    python3 -m vmdebootstrap.docs man|completion vmdebootstrap|vmdebootstrap-boottest
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence

from vmdebootstrap import __version__, verify
from vmdebootstrap.boot import boottest
from vmdebootstrap.cli import make_parser
from vmdebootstrap.errors import Interrupted, UsageError, VmdebootstrapError
from vmdebootstrap.host.distro import ALIASES, ROLLING
from vmdebootstrap.intent.options import GROUPS, OPTIONS, Kind, Option, describe
from vmdebootstrap.plan import COMPRESSORS

COMMANDS = ("vmdebootstrap", "vmdebootstrap-boottest")
SHARE = "/usr/share/vmdebootstrap/examples"
# What --arch completes to (dpkg-architecture -L is far too long).
ARCHES = ("amd64", "arm64", "armhf", "armel", "i386", "ppc64el", "s390x", "riscv64", "mips64el")
FILE_METAVARS, DIR_METAVARS = ("FILE", "PNG", "DEB", "SCRIPT", "PATH", "OUTPUT"), ("DIR",)
DISTRO_CSV = "/usr/share/distro-info/debian.csv"

# The README's commands (tests/unit/test_docs.py keeps them in step with it):
# what each does, and the command with a newline where the README breaks it.
EXAMPLES = (
    ("Build the console live ISO of the shipped example config and boot it in QEMU:",
     f"vmdebootstrap --config {SHARE}/live-console-amd64.conf\n"
     "  --iso live.iso --boot-test"),
    ("A debian-cd style build of the squashfs, kernel and initrd into out/amd64 (MIRROR and "
     "BUILD-MIRROR stand for the image's mirror and the one to build from):",
     "vmdebootstrap --owner builder --verbose --sudo --lock-root-password --enable-dhcp\n"
     "  --configure-apt --apt-mirror http://MIRROR/debian --mirror http://BUILD-MIRROR/debian\n"
     "  --log debian-cd-bookworm-amd64.log --log-level debug\n"
     "  --user user/live --arch amd64 --distribution bookworm\n"
     "  --customize hooks/live-amd64.sh --squash out/amd64"),
    ("A UEFI disk image with a serial console, booted in QEMU after the build:",
     "vmdebootstrap --image vm.img --size 3G --grub --use-uefi --user user/live --sudo\n"
     "  --serial-console --boot-test"),
)
BOOTTEST_EXAMPLES = (
    ("Boot an ISO under every firmware and log in as user:",
     "vmdebootstrap-boottest live.iso --firmware all --user user/live"),
    ("Boot a qcow2 disk and run a command after logging in:",
     "vmdebootstrap-boottest disk.qcow2 --user user/live --command "
     "'systemctl is-system-running'"),
)
DESCRIPTION = (
    "vmdebootstrap bootstraps a Debian root filesystem from a package mirror with mmdebstrap "
    "(or debootstrap), configures it, runs an optional customisation hook, and writes one "
    "output: a hybrid BIOS+UEFI live ISO, a squashfs directory for live media, a tarball or "
    "a bootable disk image.  Every option and config value is checked before anything is "
    "written; a failed or interrupted build unwinds every mount, loop device and temporary "
    "directory and leaves no half-written output.",
    "It is a rewrite of vmdebootstrap 1.x that keeps its long option names, config files "
    "and customisation hooks, so 1.x scripts keep working.",
    "As root it builds every output.  An ordinary user builds --squash, --iso and --tarball "
    "with the same command line: the build runs as root of its own user namespace, mapped "
    "from the user's ranges in /etc/subuid and /etc/subgid with newuidmap and newgidmap "
    "(package uidmap), so the outputs are the user's and the image's owners are its own; "
    "nothing is mounted on the host.  --image and --layered need root.")
CONFIG_FILES = (
    "INI files with a [config] section whose keys are the long option names and whose "
    "values are written as on the command line: lists comma separated, switches yes or no.  "
    "/etc/vmdebootstrap.conf and ~/.vmdebootstrap.conf are read first (unless "
    "--no-default-configs), then each --config in order; the command line wins over all of "
    "them.  Unknown keys are errors.  --dump-config prints the effective settings in the "
    "same format, without passwords.")
FILES_USED = (
    ("/etc/vmdebootstrap.conf", "system-wide config file, read first"),
    ("~/.vmdebootstrap.conf", "the user's config file, read next"),
    ("/var/cache/vmdebootstrap", "the cache of packages and bootstrapped roots when run as "
     "root (else $XDG_CACHE_HOME/vmdebootstrap, i.e. ~/.cache/vmdebootstrap); see --cache-dir"),
    ("/usr/share/vmdebootstrap/common/customise.lib", "the shell helper library for "
     "customisation hooks, at vmdebootstrap 1.x's path; hooks also find it in "
     "$VMDEBOOTSTRAP_HELPERS"),
    (SHARE, "example config files and hooks, also searched for --customize scripts"),
)


# ---- roff -----------------------------------------------------------------------------

def esc(text: str) -> str:
    """Text safe in a roff line: backslashes, minus signs, non-ASCII."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)


def _line(text: str) -> str:
    """A text line: one starting with . or ' would be read as a request."""
    return "\\&" + text if text.startswith((".", "'")) else text


def _para(text: str) -> list[str]:
    return [".PP", _line(esc(text))]


def _bold(text: str, font: str = "B") -> str:
    return f"\\f{font}{esc(text)}\\fR"


def _header(command: str, summary: str) -> list[str]:
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    day = time.strftime("%Y-%m-%d", time.gmtime(int(epoch))) if epoch.isdigit() else ""
    return [f'.TH {esc(command.upper())} 1 "{day}" "vmdebootstrap {__version__}" "User Commands"',
            ".nh", ".ad l", ".SH NAME", f"{esc(command)} \\- {esc(summary)}"]


def _examples(examples: Iterable[tuple[str, str]]) -> list[str]:
    lines = [".SH EXAMPLES"]
    for what, command in examples:
        body = [_line(esc(part)) for part in command.replace("\n", " \\\n").splitlines()]
        lines += [*_para(what), ".PP", ".RS 4", ".nf", *body, ".fi", ".RE"]
    return lines


def _see_also(*pages: str) -> list[str]:
    return ['.SH "SEE ALSO"', ", ".join(_bold(p[:-3]) + p[-3:] for p in pages)]


def _entry(tag: str, body: str) -> list[str]:
    return [".TP", _line(tag), _line(esc(body))]


# ---- the parsers of vmdebootstrap-boottest and vmdebootstrap verify ----------------------

class _Caught(Exception):
    """Raised to stop a parser before it parses."""


def caught_parser(parse_args: Callable[[list[str]], object]) -> argparse.ArgumentParser:
    """The parser a module's parse_args() builds, caught as it starts to
    parse (wherever and however that module builds it)."""
    caught: list[argparse.ArgumentParser] = []

    def catch(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        caught.append(self)
        raise _Caught

    original = argparse.ArgumentParser.parse_known_args
    setattr(argparse.ArgumentParser, "parse_known_args", catch)  # noqa: B010
    try:
        parse_args([])
    except _Caught:
        pass
    finally:
        setattr(argparse.ArgumentParser, "parse_known_args", original)  # noqa: B010
    if not caught:
        raise RuntimeError(f"{parse_args.__module__}.parse_args built no parser")
    return caught[0]


boottest_parser = functools.partial(caught_parser, boottest.parse_args)
verify_parser = functools.partial(caught_parser, verify.parse_args)


def _help(action: argparse.Action) -> str:
    """An action's help, with its choices unless the help names them all."""
    text = action.help or ""
    choices = [str(c) for c in action.choices or ()]
    if choices and not all(re.search(rf"\b{re.escape(c)}\b", text) for c in choices):
        text += f" (one of: {', '.join(choices)})"
    return text.strip()


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    return [line for a in parser._actions if not a.option_strings and a.help != argparse.SUPPRESS
            for line in _entry(_action_tag(a), _help(a))]


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """The options, under their argparse groups' titles (argparse's own
    untitled group first, without a title)."""
    lines: list[str] = []
    for group in parser._action_groups:
        actions = [a for a in group._group_actions
                   if a.option_strings and a.help != argparse.SUPPRESS]
        if actions and group.title not in ("options", "optional arguments"):
            lines.append(f'.SS "{_cap(group.title or "")}"')
        for action in actions:
            lines += _entry(_action_tag(action), _help(action))
    return lines


def _usage(command: str, parser: argparse.ArgumentParser) -> str:
    return " ".join([_bold(command), f"[{_bold('OPTION', 'I')}]...", *(
        _action_tag(a) for a in parser._actions if not a.option_strings)])


# ---- vmdebootstrap ----------------------------------------------------------------------

def option_flags(opt: Option) -> list[str]:
    """Every spelling of a table option on the command line."""
    flags = [f"--{opt.name}"]
    if opt.kind is Kind.BOOL and opt.negatable and not opt.name.startswith("no-"):
        flags.append(f"--no-{opt.name}")
    if opt.opposite:
        flags.append(f"--{opt.opposite}")
    return flags


def meta_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's options that are not in the option table (--config...)."""
    table = {flag for opt in OPTIONS for flag in option_flags(opt)}
    return [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS
            and not set(a.option_strings) & table]


def _action_tag(action: argparse.Action) -> str:
    flags = ", ".join(_bold(s) for s in action.option_strings)
    if action.nargs == 0:
        return flags
    shown = str(action.metavar or action.dest.upper())
    return f"{flags} {_bold(shown, 'I')}" if flags else _bold(shown, 'I')


def _table_options(group: str) -> list[str]:
    lines: list[str] = []
    for opt in (o for o in OPTIONS if o.group == group):
        value = "" if opt.kind is Kind.BOOL else " " + _bold(opt.metavar or opt.name.upper(), "I")
        lines += _entry(", ".join(map(_bold, option_flags(opt))) + value, describe(opt))
    return lines


def _section(title: str, rows: Iterable[tuple[object, str]], font: str = "B") -> list[str]:
    """A section of tagged paragraphs: exit statuses, files."""
    return [f'.SH "{title}"', *(line for tag, meaning in rows
                                 for line in _entry(_bold(str(tag), font), meaning))]


def _cap(title: str) -> str:
    return esc(title[:1].upper() + title[1:])


def vmdebootstrap_man() -> str:
    parser = make_parser()
    lines = _header("vmdebootstrap", "build Debian live ISOs, squashfs, tarballs and disk images")
    checker = verify_parser()
    lines += [".SH SYNOPSIS", _usage("vmdebootstrap", parser) + " " + " | ".join(
        f"{_bold('--' + k)} {_bold('DIR' if k == 'squash' else 'FILE', 'I')}"
        for k in ("iso", "squash", "tarball", "image")), ".br", _usage(checker.prog, checker)]
    lines += [".SH DESCRIPTION", *_para(f"{parser.description} {DESCRIPTION[0]}"),
              *(p for text in DESCRIPTION[1:] for p in _para(text))]
    lines += [".SH OPTIONS", *_para(
        "Each option can also be given in a config file, as a key of its [config] section "
        "without the leading dashes.  A switch --NAME has a --no-NAME form where listed; "
        "the last one given wins.")]
    for key, title in GROUPS.items():
        lines += [f'.SS "{_cap(title)}"', *_table_options(key)]
    lines += [".SS \"Command line only\""]
    for action in meta_actions(parser):
        lines += _entry(_action_tag(action), action.help or "")
    lines += ['.SH "VERIFY"', _usage(checker.prog, checker), *_para(checker.description or ""),
              *_arguments(checker), *_options(checker)]
    lines += ['.SH "CONFIG FILES"', *_para(CONFIG_FILES)]
    lines += _section("EXIT STATUS", (
        (0, "success: the output is in place"),
        (VmdebootstrapError.exit_code, "the build failed; nothing half-written is left"),
        (UsageError.exit_code, "bad options or config values; nothing was written"),
        (128 + signal.SIGHUP, "stopped by a hang-up (SIGHUP), after undoing what it set up"),
        (Interrupted.exit_code, "interrupted (SIGINT or SIGTERM), after undoing what it "
         "set up"),
    ))
    lines += _examples(EXAMPLES)
    lines += _section("FILES", FILES_USED, font="I")
    lines += _see_also("vmdebootstrap-boottest(1)", "mmdebstrap(1)", "debootstrap(8)",
                       "mksquashfs(1)", "xorriso(1)")
    return "\n".join(lines) + "\n"


# ---- vmdebootstrap-boottest -------------------------------------------------------------

def boottest_man() -> str:
    parser = boottest_parser()
    positionals = _arguments(parser)
    lines = _header("vmdebootstrap-boottest", "boot an ISO or disk image in QEMU and log in")
    lines += [".SH SYNOPSIS", _usage("vmdebootstrap-boottest", parser)]
    lines += [".SH DESCRIPTION", *_para(parser.description or "")]
    lines += _para("The password is typed on the serial console only, never put on QEMU's "
                   "command line.  vmdebootstrap --boot-test runs the same check on the output "
                   "it has just built.")
    lines += [".SH ARGUMENTS", *positionals] if positionals else []
    lines += [".SH OPTIONS", *_options(parser)]
    lines += _section("EXIT STATUS", (
        (0, "every boot passed"),
        (1, "a boot failed"),
        (2, "bad options, or FILE cannot be booted as asked; nothing was started"),
        ("128+N", "stopped by signal N (130 for Ctrl-C); QEMU is stopped too"),
    ))
    lines += _examples(BOOTTEST_EXAMPLES)
    lines += _see_also("vmdebootstrap(1)", "qemu-system-x86_64(1)")
    return "\n".join(lines) + "\n"


# ---- bash completion --------------------------------------------------------------------

# What an option's value completes to: words, or one of these actions.
FILES, DIRS, USERS, DISTS = "@files", "@dirs", "@users", "@distributions"


def _value_kind(action: argparse.Action, extra: dict[str, Sequence[str]]) -> Sequence[str]:
    """Words, or FILES, DIRS, USERS or DISTS (a str, the others are lists)."""
    given = [extra[flag] for flag in action.option_strings if flag in extra]
    metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    return (given[0] if given else [str(c) for c in action.choices] if action.choices
            else FILES if metavar in FILE_METAVARS else DIRS if metavar in DIR_METAVARS else ())


# The shell code completing each kind of value.
ACTIONS = {FILES: "_vmdb_paths -f", DIRS: "_vmdb_paths -d", USERS: '_vmdb_words "$(compgen -u)"',
           DISTS: '_vmdb_words "$(_vmdb_distributions)"'}


def _completing(parser: argparse.ArgumentParser, extra: dict[str, Sequence[str]],
                indent: str) -> list[str]:
    """Shell code completing the value of the previous word's option, else
    an option name (or FILE, where the command takes one)."""
    arms: dict[str, list[str]] = {}
    for action in (a for a in parser._actions if a.option_strings and a.nargs != 0):
        kind = _value_kind(action, extra)
        body = ACTIONS[kind] if isinstance(kind, str) else \
            f"_vmdb_words '{' '.join(kind)}'" if kind else "COMPREPLY=()"
        arms.setdefault(body, []).extend(action.option_strings)
    flags = sorted(s for a in parser._actions for s in a.option_strings if s.startswith("--"))
    words = f"_vmdb_words '{' '.join(flags)}'"
    if any(not a.option_strings for a in parser._actions):
        words = f"if [[ $cur == -* ]]; then {words}; else _vmdb_paths -f; fi"
    return [indent + line for line in ("case $prev in", *(
        f"    {'|'.join(flags)}) {body}; return ;;" for body, flags in arms.items()),
        "esac", words)]


COMPLETION_HELPERS = r"""_vmdb_words() {
    local IFS=$' \t\n'
    mapfile -t COMPREPLY < <(compgen -W "$1" -- "$cur")
}
_vmdb_paths() {  # -f: files, -d: directories
    compopt -o filenames 2>/dev/null
    mapfile -t COMPREPLY < <(compgen "$1" -- "$cur")
}
_vmdb_distributions() {
    local _ series
    echo %ALIASES%
    [ -r %CSV% ] && while IFS=, read -r _ _ series _; do
        [ "$series" = series ] || echo "$series"
    done < %CSV%
    echo %ROLLING%
}
"""
# vmdebootstrap verify OUTPUT, a subcommand: its own options after the word verify.
VERIFY_FIRST = ['    if [ "$COMP_CWORD" -gt 1 ] && [ "${COMP_WORDS[1]}" = verify ]; then',
                "        return", "    fi", '    if [ "$COMP_CWORD" = 1 ] && [[ $cur != -* ]]; '
                "then _vmdb_words verify; return; fi"]


def completion(command: str) -> str:
    """A bash completion script for command."""
    lines = [f"# bash completion for {command} (generated by python3 -m vmdebootstrap.docs)",
             COMPLETION_HELPERS.replace("%ALIASES%", " ".join(ALIASES)).replace(
                 "%ROLLING%", " ".join(ROLLING)).replace("%CSV%", DISTRO_CSV).rstrip("\n"),
             f"_{command.replace('-', '_')}() {{",
             "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}",
             "    # --option=value: bash splits the word at the =",
             "    if [ \"$cur\" = = ]; then cur=; elif [ \"$prev\" = = ] && "
             "[ \"$COMP_CWORD\" -ge 2 ]; then prev=${COMP_WORDS[COMP_CWORD-2]}; fi"]
    if command == "vmdebootstrap":
        extra: dict[str, Sequence[str]] = {
            f"--{o.name}": o.choices or () for o in OPTIONS if o.choices}
        extra.update({"--arch": ARCHES, "--distribution": DISTS, "--owner": USERS,
                      "--squash-compression": COMPRESSORS})
        lines += [VERIFY_FIRST[0], *_completing(verify_parser(), {}, " " * 8), *VERIFY_FIRST[1:]]
        lines += _completing(make_parser(), extra, " " * 4)
    else:
        lines += _completing(boottest_parser(), {}, " " * 4)
    lines += ["}", f"complete -F _{command.replace('-', '_')} {command}"]
    return "\n".join(lines) + "\n"


GENERATORS: dict[tuple[str, str], Callable[[], str]] = {
    ("man", "vmdebootstrap"): vmdebootstrap_man, ("man", "vmdebootstrap-boottest"): boottest_man,
    **{("completion", c): functools.partial(completion, c) for c in COMMANDS}}


def main(argv: Sequence[str] | None = None) -> int:
    generate = GENERATORS.get(tuple(sys.argv[1:] if argv is None else argv))  # type: ignore[arg-type]
    if generate is None:
        print("usage: python3 -m vmdebootstrap.docs man|completion "
              + "|".join(COMMANDS), file=sys.stderr)
        return 2
    sys.stdout.write(generate())
    return 0


if __name__ == "__main__":
    sys.exit(main())
