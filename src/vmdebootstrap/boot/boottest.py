"""Prove that an ISO or disk image boots: start QEMU, log in on the serial
console, run a command and report its output and exit status.

The guest must run a getty on the serial port QEMU connects to (ttyS0 on
x86, ttyAMA0 on arm64: guests.SERIAL_CONSOLES), with ``console=`` naming it on
the kernel command line, as ``--serial-console`` builds do.  The password is
only ever typed over the serial console: it is never on QEMU's command line,
is never logged as typed, and is masked in console output that is logged or
printed (see run.Masker for the minimum length it masks).  Accounts that must
change their password at first login are not supported (the test reports
that instead of changing it).

Under ``--firmware uefi-sb`` (OVMF enforcing Secure Boot, with Microsoft's
keys enrolled as on a PC sold with Windows) the guest must also report
Secure Boot enabled, and a loader the firmware refuses fails the test at
once, saying so.

Everything that can be checked is checked before QEMU starts: FILE is a
readable ISO, disk image with a partition table or qcow2 (media.check_image)
and QEMU and the firmware for each boot are installed
(guests.missing_boot_tools); a refusal exits 2 and starts nothing.

This module is the flow; boot/boottest_args.py is the command line,
boot/qemu.py runs QEMU, boot/media.py tells what is booted and
boot/console.py talks to the guest.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

from vmdebootstrap.boot.boottest_args import parse_args
from vmdebootstrap.boot.console import (
    FATAL,
    KERNEL_SECURE_BOOT,
    LOGIN,
    SECURE_BOOT_PROBE,
    BootFailed,
    Console,
    ConsoleClosed,
    default_command,
    failure,
    login_and_run,
    run_in_shell,
    secure_boot_state,
    silent,
)
from vmdebootstrap.boot.guests import FIRMWARES, guest_firmwares, missing_boot_tools, serial_console
from vmdebootstrap.boot.installer import start_installer
from vmdebootstrap.boot.media import (
    check_image,
    default_firmwares,
    disk_header,
    efi_loader_signed,
)
from vmdebootstrap.boot.qemu import (
    BootTestError,
    BootTestRefused,
    boot_plan,
    choose_accel,
    qemu_argv,
    qemu_running,
    scratch_dir,
    serial_of,
)
from vmdebootstrap.errors import VmdebootstrapError
from vmdebootstrap.host import progress
from vmdebootstrap.host.binfmt import host_arch
from vmdebootstrap.host.passwords import split_user
from vmdebootstrap.host.run import Masker, SubprocessRunner

__all__ = ["BootReport", "BootTestError", "BootTestRefused", "boot_test", "check_output",
           "main", "parse_args", "parse_user"]

log = logging.getLogger("vmdebootstrap.boot.boottest")


def parse_user(value: str) -> tuple[str, str | None]:
    """'NAME/PASSWORD' -> (name, password); 'NAME/' -> empty password; 'NAME' -> None."""
    name, password = split_user(value)
    if not re.fullmatch(r"[a-z_][a-z0-9_.-]*\$?", name):
        raise BootTestRefused(f"--user: {name!r} is not a user name")
    return name, (password if "/" in value else None)


@dataclass
class BootReport:
    firmware: str
    accel: str
    seconds_to_login: float | None
    command_output: str
    ok: bool
    returncode: int | None = None
    error: str | None = None
    secure_boot: str | None = None  # uefi-sb: enabled | disabled | unknown, as the guest says
    console_tail: str = field(default="", repr=False)


# ---- one boot -------------------------------------------------------------------------

def _check_tools(arch: str, firmwares: Sequence[str]) -> None:
    problems = missing_boot_tools(arch, firmwares)
    if problems:
        raise BootTestRefused(problems)


def _doing(command: str | None, user: str) -> str:
    """What the status says while the command runs."""
    if command:
        return "running the command"
    return "reading /etc/debian_version" if user == "root" else "checking sudo"


def _converse(con: Console, report: BootReport, *, arch: str, user: str | None,
              password: str | None, command: str | None, started: float,
              timeout: float, status: Callable[[str], None] = silent) -> None:
    """Wait for the login prompt (no user) or log in and run the command;
    under uefi-sb, also ask the guest whether Secure Boot is on.  The
    outcome goes into ``report``; ``status`` hears each new wait."""
    try:
        if user is None:
            status("waiting for the login prompt")
            found = con.expect([LOGIN, FATAL], timeout)
            if found is None or found[0] != 0:
                raise BootFailed(f"no login prompt on {serial_console(arch)}" if found is None
                                 else failure(found[1]))
            report.seconds_to_login = time.monotonic() - started
            report.ok = True
        else:
            session = login_and_run(con, user=user, password=password,
                                    command=command or default_command(user),
                                    started=started, deadline=started + timeout,
                                    status=status, doing=_doing(command, user))
            report.seconds_to_login = session.seconds_to_login
            report.command_output = session.output
            report.returncode = session.returncode
            report.ok = session.returncode == 0
            if not report.ok:
                report.error = f"the command exited with status {session.returncode}"
        if report.ok and report.firmware == "uefi-sb":
            status("checking Secure Boot")
            _check_secure_boot(con, report, logged_in=user is not None,
                               deadline=started + timeout)
    except (BootFailed, ConsoleClosed, BrokenPipeError) as e:
        report.ok = False
        report.error = str(e) or type(e).__name__


def _check_secure_boot(con: Console, report: BootReport, *, logged_in: bool,
                       deadline: float) -> None:
    """The guest must say Secure Boot is on: its SecureBoot EFI variable when
    logged in, else what its kernel said at boot."""
    if logged_in:
        output, _ = run_in_shell(con, SECURE_BOOT_PROBE, deadline)
        report.secure_boot = secure_boot_state(output)
        where = "its SecureBoot EFI variable"
    else:
        said = KERNEL_SECURE_BOOT.search(con.text)
        report.secure_boot = said.group(1) if said else "unknown"
        where = "its kernel (log in with --user to read the SecureBoot variable)"
    if report.secure_boot != "enabled":
        report.ok = False
        report.error = (f"the guest booted but does not report Secure Boot enabled "
                        f"({where}: {report.secure_boot})")


def _qemu_said(errlog: Path, masker: Masker) -> str:
    qemu_err = errlog.read_text(errors="replace").strip()
    return "\nQEMU said:\n" + masker(qemu_err[-1500:]) if qemu_err else ""


def boot_test(path: Path, *, firmware: str, arch: str, user: str | None,
              password: str | None, command: str | None, timeout: float,
              accel: str = "auto", log: Callable[[str], None] = log.info,
              media: str | None = None, memory: int = 1024,
              console: TextIO | None = None,
              status: Callable[[str], None] | None = None) -> BootReport:
    """Boot ``path`` once with ``firmware`` (bios|uefi|uefi-sb) and, if ``user`` is
    given, log in and run ``command``.  Without a user, reaching the login prompt
    is the test.  Under uefi-sb the guest must also report Secure Boot enabled.
    BootTestRefused, before anything starts, when ``path``, ``media`` or the
    host's QEMU and firmware cannot do it.  ``status`` hears a short phrase
    each time the test starts waiting for something new."""
    say = status or silent
    media, _ = check_image(path, media)
    _check_tools(arch, [firmware])
    accel = choose_accel(accel, arch, status=say)
    masker = Masker()
    if password:
        masker.add(password)
    with scratch_dir() as tmp:
        plan = boot_plan(arch=arch, firmware=firmware, accel=accel, media=media, image=path,
                         scratch=tmp, memory=memory)
        argv = qemu_argv(plan)
        errlog = tmp / "qemu.stderr"
        log(f"{firmware}: booting {path.name} ({media}, {accel})")
        say(f"starting QEMU ({firmware}, {accel})")
        started = time.monotonic()
        report = BootReport(firmware, accel, None, "", False)
        with errlog.open("wb") as err, qemu_running(argv, stderr=err) as proc:
            con = serial_of(proc, echo=console, masker=masker)
            _converse(con, report, arch=arch, user=user, password=password,
                      command=command, started=started, timeout=timeout, status=say)
            report.console_tail = con.tail()
            say("stopping QEMU")
        if not report.ok and report.error:
            report.error += _qemu_said(errlog, masker)
    return report


def check_output(path: Path, *, arch: str, user: str | None, password: str | None,
                 timeout: float = 900, log: Callable[[str], None] = log.info,
                 status: Callable[[str], None] | None = None) -> list[BootReport]:
    """Boot a freshly built output under each firmware it is made for
    (--boot-test); raise BootTestError unless every boot logged in, and
    BootTestRefused before the first boot if one of them cannot start.
    ``status`` hears what each boot waits for (see boot_test)."""
    media, _ = check_image(path)
    runner = SubprocessRunner()
    header = disk_header(path, media, runner)
    firmwares = default_firmwares(media, arch, header,
                                  signed=efi_loader_signed(path, media, arch, runner))
    _check_tools(arch, firmwares)
    reports = []
    for fw in firmwares:
        report = boot_test(path, firmware=fw, arch=arch, user=user, password=password,
                           command=None, timeout=timeout, log=log, media=media,
                           status=status)
        login = ("never" if report.seconds_to_login is None
                 else f"{report.seconds_to_login:.0f} s")
        secure = f", Secure Boot {report.secure_boot}" if report.secure_boot else ""
        log(f"boot test {fw} ({report.accel}): login after {login}{secure}: "
            f"{'OK' if report.ok else 'FAILED'}")
        if not report.ok:
            raise BootTestError(f"boot test of {path} under {fw} failed: {report.error}\n"
                                f"last console output:\n{report.console_tail[-2000:]}")
        reports.append(report)
    return reports


# ---- command line ---------------------------------------------------------------------

class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: stop like Ctrl-C, exit with 128 + its number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # SIGINT is Python's KeyboardInterrupt


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signum)


def _firmwares(choice: str | None, media: str, arch: str, header: bytes,
               signed: Callable[[], bool]) -> list[str]:
    if choice in FIRMWARES:
        return [choice]
    if choice == "both":
        return ["bios", "uefi"]
    if choice == "all":
        return guest_firmwares(arch)
    return default_firmwares(media, arch, header, signed=signed())


def _print_report(fw: str, report: BootReport, verbose: bool) -> None:
    login = (f"{report.seconds_to_login:.1f} s" if report.seconds_to_login is not None
             else "never")
    print(f"{fw} ({report.accel}): login after {login}: {'OK' if report.ok else 'FAILED'}")
    if report.secure_boot:
        print(f"{fw}: the guest reports Secure Boot {report.secure_boot}")
    if report.command_output:
        print(report.command_output)
    if not report.ok:
        print(f"{fw}: {report.error}", file=sys.stderr)
        if not verbose and report.console_tail:
            print(f"--- last console output ---\n{report.console_tail}", file=sys.stderr)


def _prepare(args: argparse.Namespace) -> tuple[str, str, list[str]]:
    """(arch, media, firmwares) for booting FILE as asked; BootTestRefused
    unless FILE, the options and the host's QEMU and firmware allow it."""
    arch: str = args.arch or host_arch()
    path: Path = args.file
    media, _ = check_image(path, args.media)
    if args.installer and media != "iso":
        raise BootTestRefused(f"--installer: {path} is not booted as an ISO (name it .iso "
                              "or pass --media iso)")
    runner = SubprocessRunner()
    header = disk_header(path, media, runner)
    firmwares = _firmwares(args.firmware, media, arch, header,
                           lambda: efi_loader_signed(path, media, arch, runner))
    _check_tools(arch, firmwares)
    return arch, media, firmwares


def _boot_all(args: argparse.Namespace) -> bool:
    """Boot FILE under each firmware asked for; True if every boot passed."""
    user, password = parse_user(args.user) if args.user else (None, None)
    arch, media, firmwares = _prepare(args)
    if password == "-":  # read only once nothing stands in the way
        password = sys.stdin.readline().rstrip("\n")
    ok = True
    # --verbose streams the guest's console to stderr: no status line then.
    progress.STATUS.attach(None if args.verbose else sys.stderr)
    for fw in firmwares:
        if args.installer:
            ok = _start_installer(args.file, fw, arch, args) and ok
            continue
        with progress.step(f"boot test {fw}"):
            report = boot_test(args.file, firmware=fw, arch=arch, user=user,
                               password=password, command=args.command,
                               timeout=args.timeout, accel=args.accel,
                               log=progress.echo(sys.stderr), media=media, memory=args.memory,
                               console=sys.stderr if args.verbose else None,
                               status=progress.detail)
        _print_report(fw, report, args.verbose)
        ok = ok and report.ok
    return ok


def _start_installer(path: Path, fw: str, arch: str, args: argparse.Namespace) -> bool:
    started = start_installer(path, arch=arch, firmware=fw, timeout=args.timeout,
                              accel=args.accel)
    if started.ok:
        print(f"{fw}: the installer asks {started.question!r} after "
              f"{started.seconds_to_question or 0:.1f} s: OK")
    else:
        print(f"{fw}: {started.error}", file=sys.stderr)
        print(f"--- last console output ---\n{started.console_tail}", file=sys.stderr)
    return started.ok


def _run(args: argparse.Namespace) -> int:
    try:
        return 0 if _boot_all(args) else 1
    except KeyboardInterrupt as e:
        signum = e.signum if isinstance(e, Stopped) else signal.SIGINT
        name = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
        print(f"interrupted{name}", file=sys.stderr)
        return 128 + signum
    except BootTestRefused as e:
        for problem in e.problems:
            print(f"vmdebootstrap-boottest: error: {problem}", file=sys.stderr)
        return e.exit_code
    except VmdebootstrapError as e:
        print(f"vmdebootstrap-boottest: {e}", file=sys.stderr)
        return e.exit_code


def main(argv: list[str] | None = None) -> int:
    """vmdebootstrap-boottest.  QEMU never outlives it: Ctrl-C, SIGTERM and
    SIGHUP stop the boot, and it exits with 128 + the signal's number."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(message)s", stream=sys.stderr)
    saved = {sig: signal.signal(sig, _stop) for sig in STOPPING_SIGNALS}
    try:
        return _run(args)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
