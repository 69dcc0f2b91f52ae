"""The command line's parser: the option table as argparse options, its
--help, and clear refusals of what argparse would word its own way."""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Callable, Sequence
from typing import NoReturn

from vmdebootstrap import __version__
from vmdebootstrap.cli.stdin import NoteOrder
from vmdebootstrap.errors import UsageError
from vmdebootstrap.intent.options import GROUPS, OPTIONS, Kind, Option, describe
from vmdebootstrap.intent.settings import SECRET_OPTIONS

USAGE = ("%(prog)s [OPTION...] --image FILE | --tarball FILE | --squash DIR | --iso FILE\n"
         "       %(prog)s --config FILE [OPTION...]\n"
         "       %(prog)s verify OUTPUT [--hook-dir DIR] (rebuild OUTPUT from its manifest "
         "and compare)")
# What argparse itself treats as a negative number, hence as a value.
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


def printable(text: str) -> str:
    """A problem on one line: control characters a user typed are escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Switch(argparse.Action):
    """A yes/no option under all its names: the first sets it, the others
    (--no-NAME, or 1.x's opposite name such as --update-initramfs) clear it.
    One action, so --help shows the names together, once."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[object] | None,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, option_string == self.option_strings[0])


def switch_names(opt: Option) -> list[str]:
    """A switch's command line names: the one that turns it on first."""
    names = [f"--{opt.name}"]
    if opt.negatable and not opt.name.startswith("no-"):
        names.append(f"--no-{opt.name}")
    if opt.opposite:
        names.append(f"--{opt.opposite}")
    return names


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is a UsageError naming the option
    (exit 2 with the other problems), and nothing is positional."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(_reworded(message))

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        argv = list(args or [])
        strays = stray_arguments(argv, self._takes_value)
        problems = encoding_problems(argv, strays)
        if problems:  # argparse is not asked about text that cannot be shown
            raise UsageError(problems + self._stray_problems(
                argv, [(i, a) for i, a in strays if _is_utf8(a)]))
        ns, extras = self.parse_known_args(argv, namespace)
        if extras:
            raise UsageError(self._extras_problems(argv, extras, strays))
        return ns

    def _takes_value(self, name: str) -> bool | None:
        """Whether the option ``name`` takes a value (None: no such option)."""
        action = self._option_string_actions.get(name)
        return None if action is None else action.nargs != 0

    def _extras_problems(self, argv: list[str], extras: list[str],
                         strays: list[tuple[int, str]]) -> list[str]:
        positional = {arg for _i, arg in strays}
        problems = [self._unknown_option(arg) for arg in dict.fromkeys(extras)
                    if arg not in positional]
        return problems + self._stray_problems(argv, strays)

    def _stray_problems(self, argv: list[str], strays: list[tuple[int, str]]) -> list[str]:
        problems = []
        for index, arg in strays:
            previous = argv[index - 2] if index > 1 else ""
            takes = self._takes_value(previous)
            if takes is None and previous.startswith("-") and "=" not in previous \
                    and previous != "--":
                continue  # the value of an unknown option, which is reported
            problems.append(stray_problem(index, arg, previous, takes))
        return problems

    def _unknown_option(self, arg: str) -> str:
        name = arg.partition("=")[0]
        close = difflib.get_close_matches(name, list(self._option_string_actions), n=1)
        hint = f"; did you mean {close[0]}?" if close else " (vmdebootstrap --help lists them)"
        return f"{printable(name)}: no such option{hint}"


def stray_problem(index: int, arg: str, previous: str, previous_takes: bool | None) -> str:
    """What to say of argument ``index`` (from 1), which is no option's value."""
    if arg == "--":
        return (f"unexpected argument {index} '--': vmdebootstrap takes no positional "
                "arguments, so there is nothing for '--' to separate")
    hint = ""
    if arg == "verify":  # the one subcommand (cli.main), which only works first
        hint = " (the verify subcommand comes first: vmdebootstrap verify OUTPUT)"
    elif previous_takes is False:
        hint = f" ({previous} is a switch and takes no value)"
    return (f"unexpected argument {index} {printable(repr(arg))}{hint}: vmdebootstrap takes "
            "no positional arguments; options start with --")


TakesValue = Callable[[str], bool | None]


def stray_arguments(argv: list[str], takes_value: TakesValue) -> list[tuple[int, str]]:
    """The arguments (position from 1, text) that are no option nor an
    option's value, found as argparse finds them: everything after '--',
    and words that do not start with '-' where no option expects a value."""
    strays: list[tuple[int, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            strays += [(j + 1, a) for j, a in enumerate(argv[i:], i)]
            break
        if arg.startswith("-") and arg != "-" and not _NEGATIVE_NUMBER.match(arg):
            name, eq, _ = arg.partition("=")
            if not eq and takes_value(name) and i + 1 < len(argv):
                i += 1  # its value
        else:
            strays.append((i + 1, arg))
        i += 1
    return strays


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encoding_problems(argv: list[str], strays: list[tuple[int, str]]) -> list[str]:
    """Bytes that are not UTF-8 (a file name from another locale) reach us
    as lone surrogates, which nothing can print or write into the image.
    The value is not echoed: it may be a password."""
    positions = {i for i, _arg in strays}
    problems = []
    for i, arg in enumerate(argv):
        if _is_utf8(arg):
            continue
        if i + 1 in positions:
            problems.append(f"unexpected argument {i + 1} (not valid UTF-8 text): "
                            "vmdebootstrap takes no positional arguments; options start with --")
        elif arg.startswith("-"):
            problems.append(f"{printable(arg.partition('=')[0])}: the value is not valid "
                            "UTF-8 text")
        else:
            problems.append(f"{printable(argv[i - 1])}: the value is not valid UTF-8 text")
    return problems


_EXPECTED = re.compile(r"argument (--[^\s:/]+)(?:/[^:]*)?: expected one argument")
_EXPLICIT = re.compile(r"argument ([^:]+): ignored explicit argument (.*)")


def _reworded(message: str) -> str:
    """argparse's own messages, in the words of the other problems."""
    m = _EXPECTED.fullmatch(message)
    if m:
        return (f"{m.group(1)}: give it a value (a value that starts with '-' is written "
                f"{m.group(1)}=VALUE)")
    m = _EXPLICIT.fullmatch(message)
    if m:
        names = m.group(1).split("/")
        return (f"{names[0]} is a switch and takes no value ({printable(m.group(2))} given): "
                + (f"use {names[0]} or {names[1]}" if len(names) > 1 else f"use {names[0]}"))
    return message


def make_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="vmdebootstrap", usage=USAGE,
        description="Build Debian live root filesystems, live ISOs, tarballs and disk images.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"vmdebootstrap {__version__}")
    groups = {key: parser.add_argument_group(title) for key, title in GROUPS.items()}
    for opt in OPTIONS:
        group, flag, text = groups[opt.group], f"--{opt.name}", describe(opt)
        metavar = opt.metavar or opt.name.upper()
        if opt.kind is Kind.BOOL:
            group.add_argument(*switch_names(opt), dest=opt.dest, action=_Switch, help=text)
        elif opt.name in SECRET_OPTIONS:
            group.add_argument(flag, dest=opt.dest, action=NoteOrder, metavar=metavar,
                               help=text)
        elif opt.kind is Kind.LIST:
            group.add_argument(flag, dest=opt.dest, action="append", metavar=metavar,
                               help=text)
        else:
            group.add_argument(flag, dest=opt.dest, metavar=metavar, help=text)
    meta = groups["run"]
    meta.add_argument("--config", action="append", metavar="FILE",
                      help="read settings from a config file ([config] section; repeatable)")
    meta.add_argument("--no-default-configs", action="store_true",
                      help="do not read /etc/vmdebootstrap.conf and ~/.vmdebootstrap.conf")
    meta.add_argument("--dump-config", action="store_true",
                      help="print the effective configuration and exit (after the same "
                      "checks as a build)")
    meta.add_argument("--list-config-files", action="store_true",
                      help="print the config files that would be read, in order, and exit")
    meta.add_argument("--dump-setting-names", action="store_true",
                      help="print the name of every setting (the keys of config files) "
                      "and exit")
    meta.add_argument("--help-all", action="help",
                      help="show this help message (every option) and exit")
    return parser
