"""Command line: options and config files -> Settings -> Plan -> build."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from vmdebootstrap import __version__
from vmdebootstrap.errors import BuildError, Interrupted, UsageError, VmdebootstrapError
from vmdebootstrap.host.logs import setup_logging
from vmdebootstrap.host.run import Masker, SubprocessRunner
from vmdebootstrap.intent.config_files import default_config_files, dump_config, read_config
from vmdebootstrap.intent.options import GROUPS, OPTIONS, Kind
from vmdebootstrap.intent.settings import SECRET_OPTIONS, Settings, build_settings

if TYPE_CHECKING:
    from vmdebootstrap.intent.plan import Plan

log = logging.getLogger("vmdebootstrap")



class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


# A password of "-" is read from standard input (--user NAME/-, --root-password -).
STDIN = "-"
# Where the order of the password options on the command line is noted.
_PASSWORD_ORDER = "password_order"


class _NoteOrder(argparse.Action):
    """--user (appends) and --root-password (the last one wins), noting the
    order they came in, which is the order their '-' passwords are read."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[object] | None,
                 option_string: str | None = None) -> None:
        if self.dest == "user":
            setattr(namespace, self.dest, [*getattr(namespace, self.dest, []), values])
        else:
            setattr(namespace, self.dest, values)
        order = [*getattr(namespace, _PASSWORD_ORDER, []), self.dest]
        setattr(namespace, _PASSWORD_ORDER, order)


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vmdebootstrap",
        description="Build Debian live root filesystems, live ISOs, tarballs and disk images.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"vmdebootstrap {__version__}")
    groups = {key: parser.add_argument_group(title) for key, title in GROUPS.items()}
    for opt in OPTIONS:
        group = groups[opt.group]
        flag = f"--{opt.name}"
        default = f" (default: {opt.default})" if opt.default not in (None, False) else ""
        helptext = opt.help + default
        if opt.kind is Kind.BOOL:
            group.add_argument(flag, dest=opt.dest, action="store_true", help=helptext)
            if opt.negatable and not opt.name.startswith("no-"):
                group.add_argument(f"--no-{opt.name}", dest=opt.dest, action="store_false",
                                   help=argparse.SUPPRESS)
            if opt.opposite:
                group.add_argument(f"--{opt.opposite}", dest=opt.dest, action="store_false",
                                   help=f"the opposite of {flag}"
                                   + (" (the default)" if opt.default is False else ""))
        elif opt.name in SECRET_OPTIONS:
            group.add_argument(flag, dest=opt.dest, action=_NoteOrder, metavar=opt.metavar,
                               help=helptext)
        elif opt.kind is Kind.LIST:
            group.add_argument(flag, dest=opt.dest, action="append", metavar=opt.metavar,
                               help=helptext)
        else:
            group.add_argument(flag, dest=opt.dest, metavar=opt.metavar or opt.name.upper(),
                               help=helptext)
    meta = groups["run"]
    meta.add_argument("--config", action="append", metavar="FILE",
                      help="read settings from a config file ([config] section; repeatable)")
    meta.add_argument("--no-default-configs", action="store_true",
                      help="do not read /etc/vmdebootstrap.conf and ~/.vmdebootstrap.conf")
    meta.add_argument("--dump-config", action="store_true",
                      help="print the effective configuration and exit")
    meta.add_argument("--list-config-files", action="store_true",
                      help="print the config files that would be read, in order, and exit")
    meta.add_argument("--dump-setting-names", action="store_true",
                      help="print the name of every setting (the keys of config files) "
                      "and exit")
    meta.add_argument("--help-all", action="help",
                      help="show this help message (every option) and exit")
    return parser


def parse(argv: Sequence[str]) -> tuple[Settings, argparse.Namespace]:
    settings, ns, problems = parse_collecting(argv)
    if problems:
        raise UsageError(problems)
    return settings, ns


def parse_collecting(argv: Sequence[str]) -> tuple[Settings, argparse.Namespace, list[str]]:
    """Like parse(), but bad values are returned as problems, not raised."""
    return settings_of(make_parser().parse_args(list(argv)))


def config_files_of(ns: argparse.Namespace) -> list[Path]:
    """The config files to read, in order: the default ones, then --config."""
    given = vars(ns)
    configs: list[Path] = []
    if not given.get("no_default_configs"):
        configs += default_config_files()
    configs += [Path(c) for c in given.get("config", [])]
    return configs


def setting_names() -> list[str]:
    """Every key a config file takes (an option's other name after it)."""
    return [n for o in OPTIONS for n in (o.name, o.opposite) if n]


def _drop_empty_values(ns: argparse.Namespace, problems: list[str]) -> None:
    """argparse turns `--user=--` into an empty list instead of a string: say
    so, and keep an empty string in its place (later checks count them)."""
    for opt in OPTIONS:
        values = getattr(ns, opt.dest, None)
        if opt.kind is Kind.LIST and isinstance(values, list) and \
                any(not isinstance(v, str) for v in values):
            problems.append(f"--{opt.name}: give it a value ('--' is not one)")
            setattr(ns, opt.dest, [v if isinstance(v, str) else "" for v in values])
        elif opt.kind is not Kind.LIST and isinstance(values, list):
            problems.append(f"--{opt.name}: give it a value ('--' is not one)")
            delattr(ns, opt.dest)
    configs = getattr(ns, "config", None) or []
    if any(not isinstance(c, str) for c in configs):
        problems.append("--config: give it a value ('--' is not one)")
        ns.config = [c for c in configs if isinstance(c, str)]


def settings_of(ns: argparse.Namespace) -> tuple[Settings, argparse.Namespace, list[str]]:
    """Settings from parsed arguments and the config files; the '-' passwords
    are read first (ns.stdin_passwords lists them, for masking)."""
    problems: list[str] = []
    _drop_empty_values(ns, problems)
    ns.stdin_passwords = _read_stdin_passwords(ns, problems)
    given = vars(ns)
    configs = config_files_of(ns)
    layers: list[tuple[str, dict[str, object]]] = []
    for path in configs:
        layers.append((str(path), read_config(path)))
    cli_values: dict[str, object] = {}
    for opt in OPTIONS:
        if opt.dest in given:
            value = given[opt.dest]
            cli_values[opt.name] = tuple(value) if opt.kind is Kind.LIST else value
    cli_values["config-files"] = tuple(str(p) for p in configs)
    layers.append(("command line", cli_values))
    return build_settings(layers, problems), ns, problems


def _stdin_passwords_wanted(ns: argparse.Namespace) -> list[tuple[str, int]]:
    """The '-' passwords, in command line order, as (dest, index into
    ns.user); only the last --root-password counts (as for any option
    given twice)."""
    order: list[str] = getattr(ns, _PASSWORD_ORDER, [])
    users: list[str] = getattr(ns, "user", [])
    wanted: list[tuple[str, int]] = []
    user_index = 0
    last_root = len(order) - 1 - order[::-1].index("root_password") \
        if "root_password" in order else -1
    for position, dest in enumerate(order):
        if dest == "user":
            if users[user_index].partition("/")[2] == STDIN:
                wanted.append((dest, user_index))
            user_index += 1
        elif position == last_root and ns.root_password == STDIN:
            wanted.append((dest, -1))
    return wanted


def _read_stdin_passwords(ns: argparse.Namespace, problems: list[str]) -> list[str]:
    """Replace the '-' of --user NAME/- and --root-password - with lines of
    standard input: one line for each '-', in the order the options are on
    the command line.  Only the trailing newline is taken off a line; an
    empty line is an empty password (for --user, as NAME/ is) or a problem
    (for --root-password).  Standard input is only read when a '-' is
    given.  An option whose password is missing is left out, with a
    problem that names it.  Returns the passwords read."""
    wanted = _stdin_passwords_wanted(ns)
    if not wanted:
        return []
    users: list[str] = list(getattr(ns, "user", []))
    read: list[str] = []
    dropped: set[tuple[str, int]] = set()
    for count, (dest, index) in enumerate(wanted, 1):
        name = users[index].partition("/")[0] if dest == "user" else ""
        where = f"--user {name}/-" if dest == "user" else "--root-password -"
        line, problem = _read_line(where)
        if line is None:  # nothing more can be read: neither this password nor the rest
            if problem is None:
                problem = (f"{where}: standard input ended before this password (it is "
                           f"password {count} of {len(wanted)}: one line is read for each "
                           "'-', in command line order)")
            problems.append(problem)
            dropped.update(wanted[count - 1:])
            break
        if problem is None and not line and dest != "user":
            problem = f"{where}: the line read from standard input is empty: give a password"
        if problem is not None:
            problems.append(problem)
            dropped.add((dest, index))
            continue
        read.append(line)
        if dest == "user":
            users[index] = f"{name}/{line}"
        else:
            setattr(ns, dest, line)
    if ("root_password", -1) in dropped:
        delattr(ns, "root_password")
    if users:
        ns.user = [u for i, u in enumerate(users) if ("user", i) not in dropped]
    return read


def _read_line(where: str) -> tuple[str | None, str | None]:
    """A line of standard input without its newline (None at its end), and
    a problem with it.  A problem never shows the line: it is a password."""
    stdin = sys.stdin
    if stdin is None:
        return None, f"{where}: there is no standard input to read the password from"
    try:
        line = stdin.readline()
    except UnicodeDecodeError:
        return None, f"{where}: the password on standard input is not valid UTF-8 text"
    except (OSError, ValueError) as exc:
        return None, f"{where}: cannot read the password from standard input: {exc}"
    if not line:
        return None, None
    line = line.removesuffix("\n")
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8, as lone surrogates
        return line, f"{where}: the password on standard input is not valid UTF-8 text"
    return line, None


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _install_signal_handlers() -> None:
    """Ctrl-C, kill and a hang-up (the ssh session of a long build dropped)
    all unwind the build: mounts, loop devices, the work dir, staged files."""
    state = {"seen": False}

    def handler(signum: int, frame: FrameType | None) -> None:
        if state["seen"]:
            log.warning("cleaning up, please wait")
            return
        state["seen"] = True
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}; "
                          "everything the build had set up was undone", signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)


def print_plan(plan: object) -> None:
    from vmdebootstrap.intent.plan import Plan
    from vmdebootstrap.root.bootstrap import debootstrap_argv, mmdebstrap_argv

    assert isinstance(plan, Plan)
    target = Path("<workdir>/root")
    argv = (mmdebstrap_argv(plan, target) if plan.bootstrap_tool == "mmdebstrap"
            else debootstrap_argv(plan, target, False))
    lines = [
        "dry run: nothing is changed",
        f"output: --{plan.output} {', '.join(map(str, plan.targets.paths))}",
        f"distribution: {plan.distribution}   architecture: {plan.arch}",
        f"mirror: {plan.mirror}   image apt mirror: {plan.apt_mirror}",
        f"bootstrap: {shlex.join(argv)}",
        f"packages: {', '.join(plan.packages) or '(none)'}",
        f"kernel package: {plan.kernel_package or '(none)'}",
    ]
    if plan.custom_debs:
        lines.append(f"custom packages: {', '.join(map(str, plan.custom_debs))}")
    if plan.foreign:
        lines.append(f"foreign: {plan.arch} through {plan.foreign.entry.interpreter}")
    system = plan.system
    users = [u.name + (" (sudo)" if system.sudo else "") for u in system.users]
    lines.append(f"users: {', '.join(users) or '(none)'}; root: "
                 + ("locked" if system.lock_root else
                    "password set" if system.root_password_hash else "unchanged"))
    lines.append(f"hostname: {system.hostname}")
    if plan.iso is not None:
        lines.append("ISO's UEFI boot: " + (
            "Debian's signed shim and grub, if the suite has them (Secure Boot)"
            if plan.iso.secure_boot else "a GRUB image built here (no Secure Boot)"))
    if system.hook:
        lines.append(f"customisation hook: {system.hook}")
    lines += [f"note: {n}" for n in plan.notes]
    # Values the user typed: a control character would reach the terminal.
    print("\n".join(_printable(line) for line in lines))


def _plan_problems(settings: Settings, known: list[str]) -> list[str]:
    """The plan's other complaints, leaving out options already reported
    (a bad value was replaced by its default, which may draw a second,
    misleading complaint)."""
    from vmdebootstrap.plan import make_plan  # late: tests replace it

    bad = {p.split(":")[0].split()[0] for p in known}
    try:
        _checked_plan(make_plan, settings)
    except UsageError as exc:
        return [p for p in exc.problems if not any(b in p for b in bad)]
    return []


def main(argv: Sequence[str] | None = None) -> int:
    masker = Masker()
    plan: Plan | None = None
    try:
        args = list(sys.argv[1:] if argv is None else argv)
        _check_encoding(args)
        ns = make_parser().parse_args(args)
        if getattr(ns, "list_config_files", False):
            print("".join(f"{path}\n" for path in config_files_of(ns)), end="")
            return 0
        if getattr(ns, "dump_setting_names", False):
            print("\n".join(setting_names()))
            return 0
        settings, ns, problems = settings_of(ns)
        for password in ns.stdin_passwords:
            masker.add(password)
        if settings.root_password:
            masker.add(settings.root_password)
        for value in settings.user:
            masker.add(value.partition("/")[2])
        if problems:
            raise UsageError(problems + _plan_problems(settings, problems))
        if getattr(ns, "dump_config", False):
            print(dump_config(settings), end="")
            return 0
        # No log file yet: make_plan checks --log first, and a dry run writes nothing.
        setup_logging(settings, masker, to_file=False)
        from vmdebootstrap.plan import make_plan  # late: tests replace it

        plan = _checked_plan(make_plan, settings)
        if not settings.dry_run:
            if os.geteuid() != 0:
                raise UsageError("vmdebootstrap must run as root (it mounts filesystems and "
                                 "runs chroot); use --dry-run to check options without root")
            setup_logging(settings, masker)
        for note in plan.notes:
            log.warning("%s", note)
        if settings.dry_run:
            print_plan(plan)
            return 0
        _install_signal_handlers()
        from vmdebootstrap.build import build

        build(plan, SubprocessRunner(masker))
        return 0
    except KeyboardInterrupt:
        err: VmdebootstrapError = Interrupted(
            "interrupted; everything the build had set up was undone")
        _report(err)
        return err.exit_code
    except VmdebootstrapError as exc:
        err = _explained(exc, plan) or exc
        _report(err)
        return err.exit_code
    except Exception as exc:  # not ours: still one message; the traceback goes to the log
        err = _explained(exc, plan) or _unexpected(exc)
        _report(err)
        return err.exit_code


def _checked_plan(make_plan: Callable[[Settings], Plan], settings: Settings) -> Plan:
    """make_plan, with a path the system cannot even look at (too long, a
    loop of symbolic links...) reported as the bad value it is."""
    try:
        return make_plan(settings)
    except OSError as exc:
        name = os.fsdecode(exc.filename) if exc.filename is not None else ""
        options = [f"--{o.name}" for o in OPTIONS if o.kind is Kind.STR
                   and name and getattr(settings, o.dest) in (name, os.path.basename(name))]
        where = options[0] if options else "a path given"
        short = name if len(name) <= 80 else name[:77] + "..."
        raise UsageError(f"{where}: {short}: {exc.strerror or exc}") from None


def _check_encoding(args: list[str]) -> None:
    """Bytes that are not UTF-8 (a file name from another locale) reach us
    as lone surrogates, which nothing can print or write into the image.
    The value is not echoed: it may be a password."""
    problems = []
    for i, arg in enumerate(args):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            if arg.startswith("--"):
                name = arg.partition("=")[0]
            elif i and args[i - 1].startswith("--"):
                name = args[i - 1].partition("=")[0]
            else:
                name = f"argument {i + 1}"
            problems.append(f"{_printable(name)}: the value is not valid UTF-8 text")
    if problems:
        raise UsageError(problems)


def _explained(exc: BaseException, plan: Plan | None) -> VmdebootstrapError | None:
    """The clear message for a known low-level cause (a full disk, the
    mirror...); the original error, with the command's last lines, is logged."""
    from vmdebootstrap.diagnose import explain

    clear = explain(exc, Path(tempfile.gettempdir()), plan)
    if clear is not None:
        log.debug("the failure behind the error below: %s", exc)
    return clear


def _unexpected(exc: Exception) -> VmdebootstrapError:
    log.debug("unexpected error", exc_info=exc)
    if isinstance(exc, OSError):
        name = f": {exc.filename}" if exc.filename is not None else ""
        return BuildError(f"{exc.strerror or exc}{name}")
    return BuildError(f"internal error: {type(exc).__name__}: {exc} (please report this "
                      "bug; with --log FILE the log has the traceback)")


def _printable(text: str) -> str:
    """A problem on one line: control characters a user typed are escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _report(exc: VmdebootstrapError) -> None:
    text = str(exc)
    if isinstance(exc, UsageError):
        text = "\n".join(exc.problems)
        # One "vmdebootstrap: error:" line per problem.
        message = "\n".join(f"vmdebootstrap: error: {_printable(p)}" for p in exc.problems)
    else:
        message = "\n".join(f"vmdebootstrap: {_printable(line)}"
                            for line in f"error: {text}".splitlines())
    log.debug("error: %s", text)
    for handler in log.handlers:
        handler.flush()
    print(message, file=sys.stderr)
