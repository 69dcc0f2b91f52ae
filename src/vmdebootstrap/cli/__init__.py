"""Command line: options and config files -> Settings -> Plan -> build.

The parser and its help are in cli.parser, the passwords read from standard
input in cli.stdin, the dry run's plan in cli.dryrun and how errors are
reported in cli.report."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from vmdebootstrap import __version__
from vmdebootstrap.cli import rootless
from vmdebootstrap.cli.dryrun import print_plan
from vmdebootstrap.cli.parser import make_parser
from vmdebootstrap.cli.report import checked_plan, explained, plan_problems, report, unexpected
from vmdebootstrap.cli.stdin import read_stdin_passwords
from vmdebootstrap.errors import Interrupted, UsageError, VmdebootstrapError
from vmdebootstrap.host.logs import log_header, setup_logging
from vmdebootstrap.host.run import Masker, SubprocessRunner
from vmdebootstrap.intent.config_files import (
    default_config_files,
    dump_config,
    read_config_collecting,
)
from vmdebootstrap.intent.options import OPTIONS, Kind
from vmdebootstrap.intent.settings import Settings, build_settings

if TYPE_CHECKING:
    from vmdebootstrap.intent.plan import Plan

__all__ = ["Masker", "config_files_of", "main", "make_parser", "parse", "parse_collecting",
           "print_plan", "setting_names", "settings_of", "setup_logging"]

log = logging.getLogger("vmdebootstrap")


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
    ns.stdin_passwords = read_stdin_passwords(ns, problems)
    given = vars(ns)
    configs = config_files_of(ns)
    defaults = set(configs) - {Path(c) for c in given.get("config", [])}
    layers: list[tuple[str, dict[str, object]]] = []
    # Every file's problems are said, with the command line's; planning
    # is then left out (a file not read would make its complaints wrong).
    ns.config_failed = False
    for path in configs:
        values, failed = read_config_collecting(path, default=path in defaults)
        layers.append((str(path), values))
        problems += failed
        ns.config_failed = ns.config_failed or bool(failed)
    cli_values: dict[str, object] = {}
    for opt in OPTIONS:
        if opt.dest in given:
            value = given[opt.dest]
            cli_values[opt.name] = tuple(value) if opt.kind is Kind.LIST else value
    cli_values["config-files"] = tuple(str(p) for p in configs)
    layers.append(("command line", cli_values))
    return build_settings(layers, problems), ns, problems


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


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    masker = Masker()
    plan: Plan | None = None
    try:
        if args[:1] == ["verify"]:  # a subcommand; 1.x took no positional arguments
            return _verify(args[1:], masker)
        ns = make_parser().parse_args(args)
        if getattr(ns, "list_config_files", False):
            print("".join(f"{path}\n" for path in config_files_of(ns)), end="")
            return 0
        if getattr(ns, "dump_setting_names", False):
            print("\n".join(setting_names()))
            return 0
        settings, ns = _settings(ns, masker)
        # No log file yet: make_plan checks --log first, and a dry run writes nothing.
        setup_logging(settings, masker, to_file=False)
        if getattr(ns, "dump_config", False):
            _dump_config(settings)
            return 0
        from vmdebootstrap.plan import make_plan  # late: tests replace it

        if os.geteuid() != 0:
            os.environ["PATH"] = rootless.with_sbin(os.environ.get("PATH", ""))
        plan = checked_plan(make_plan, settings)
        assert plan is not None  # or checked_plan raised
        if settings.dry_run:
            print_plan(plan)  # the plan's warnings included, said once
            if os.geteuid() != 0:
                for problem in rootless.problems(plan):
                    log.warning("without root, the build would stop: %s", problem)
            return 0
        ids = rootless.id_map_for(plan) if os.geteuid() != 0 else None
        setup_logging(settings, masker)
        log_header(__version__, args, dump_config(settings))
        for note in plan.notes:
            log.warning("%s", note)
        if ids is not None:
            log.info("building without root: as root of a user namespace (uids 1-%d "
                     "from %d, gids 1-%d from %d)", ids.subuid[1], ids.subuid[0],
                     ids.subgid[1], ids.subgid[0])
            return rootless.as_namespace_root(
                ids, SubprocessRunner(masker), lambda: _build(plan, masker),
                lambda exc: _failed(exc, plan))
        return _build(plan, masker)
    except BaseException as exc:
        return _failed(exc, plan)


def _build(plan: Plan, masker: Masker) -> int:
    try:
        _install_signal_handlers()
        from vmdebootstrap.build import build

        build(plan, SubprocessRunner(masker))
        return 0
    except BaseException as exc:
        return _failed(exc, plan)


def _failed(exc: BaseException, plan: Plan | None) -> int:
    """Report ``exc`` as one message; the exit code."""
    if isinstance(exc, KeyboardInterrupt):
        err: VmdebootstrapError = Interrupted(
            "interrupted; everything the build had set up was undone")
    elif isinstance(exc, VmdebootstrapError):
        err = explained(exc, plan) or exc
    elif isinstance(exc, Exception):  # not ours: still one message; the traceback goes to the log
        err = explained(exc, plan) or unexpected(exc)
    else:
        raise exc  # SystemExit and the like
    report(err)
    return err.exit_code


def _verify(argv: Sequence[str], masker: Masker) -> int:
    """vmdebootstrap verify: its rebuild is a build, so Ctrl-C, kill and a
    hang-up unwind it, and its errors are reported, as a build's are."""
    from vmdebootstrap import verify

    ns = verify.parse_args(argv)
    setup_logging(argparse.Namespace(verbose=ns.verbose, log=None, log_mode=0o600,
                                     log_level="debug"), masker, to_file=False)
    _install_signal_handlers()
    return verify.verify(ns)


def _settings(ns: argparse.Namespace, masker: Masker) -> tuple[Settings, argparse.Namespace]:
    """The settings, their secrets given to the masker first; a UsageError
    lists every bad value and the plan's other problems together."""
    settings, ns, problems = settings_of(ns)
    for password in ns.stdin_passwords:
        masker.add(password)
    if settings.root_password:
        masker.add(settings.root_password)
    for value in settings.user:
        masker.add(value.partition("/")[2])
    if problems and ns.config_failed:
        raise UsageError(problems)
    if problems:
        dump = getattr(ns, "dump_config", False)
        checked = settings.with_values(dry_run=True) if dump else settings
        raise UsageError(problems + plan_problems(checked, problems, need_output=not dump))
    return settings, ns


def _dump_config(settings: Settings) -> None:
    """--dump-config: the settings, once they pass a dry run's checks (a
    config file is often shared by several outputs, so none is needed)."""
    from vmdebootstrap.plan import make_plan  # late: tests replace it

    plan = checked_plan(make_plan, settings.with_values(dry_run=True), need_output=False)
    for note in plan.notes if plan is not None else ():
        log.warning("%s", note)
    print(dump_config(settings), end="")
