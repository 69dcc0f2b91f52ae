"""Start the Debian Installer entry of a live ISO (--installer) in QEMU and
wait until d-i asks its first question on the serial console.

That proves what a user needs from the entry: the menu offers it, its hotkey
boots it, the installer's kernel and initrd come up, and a preseed appended
to the initrd is read (its effects are whatever the caller expects to see).
The installer is not run to the end: it would need the network and an hour.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vmdebootstrap.boot.console import Console, ConsoleClosed
from vmdebootstrap.boot.qemu import (
    BootTestError,
    boot_plan,
    choose_accel,
    qemu_argv,
    qemu_running,
    scratch_dir,
    serial_of,
)

log = logging.getLogger("vmdebootstrap.boot.installer")

# The menus show the entry's title: grub's on the serial terminal, isolinux's
# through its SERIAL directive.
MENU_ENTRY = re.compile(r"Install")
# d-i's text frontend titles each question "[!!] Configure the network"
# (the brackets give the question's priority); on a serial line the frame
# around the title is drawn with ACS letters ("tqqqk"), which end the match.
QUESTION = re.compile(r"\[(?:!{1,3}|\.)\] [A-Z][\w,.'()/-]*(?: (?!tq)[\w,.'()/-]+)*"
                      r"(?= tq|\s{2}|\s*\n|\x1b)")  # the whole title, not what has arrived
KERNEL_PANIC = re.compile(r"Kernel panic - not syncing[^\n]*")


@dataclass
class InstallerReport:
    ok: bool = False
    seconds_to_question: float | None = None
    question: str = ""           # the title of the first question d-i asked
    seen: list[str] = field(default_factory=list)  # the ``expect`` texts, as found
    error: str | None = None
    console_tail: str = field(default="", repr=False)


def start_installer(iso: Path, *, arch: str, firmware: str, hotkey: str = "i",
                    expect: Sequence[re.Pattern[str]] = (), timeout: float = 600,
                    accel: str = "auto") -> InstallerReport:
    """Boot ``iso``, press the installer entry's hotkey in the boot menu, then
    wait for each of ``expect`` in order and for d-i's first question."""
    if not iso.is_file():
        raise BootTestError(f"{iso} does not exist")
    report = InstallerReport()
    with scratch_dir() as tmp:
        plan = boot_plan(arch=arch, firmware=firmware, accel=choose_accel(accel, arch),
                         media="iso", image=iso, scratch=tmp)
        log.info("%s: starting the installer of %s (%s)", firmware, iso.name, plan.accel)
        started = time.monotonic()
        with qemu_running(qemu_argv(plan), stderr_to_stdout=True) as proc:
            con = serial_of(proc)
            try:
                _converse(con, report, hotkey, expect, con.clock() + timeout)
            except (ConsoleClosed, BrokenPipeError) as e:
                report.error = str(e) or type(e).__name__
            report.console_tail = con.tail()
        if report.ok:
            report.seconds_to_question = time.monotonic() - started
    return report


def _converse(con: Console, report: InstallerReport, hotkey: str,
              expect: Sequence[re.Pattern[str]], deadline: float) -> None:
    if con.expect([MENU_ENTRY], deadline - con.clock()) is None:
        report.error = "the boot menu never showed an Install entry"
        return
    con.press(hotkey)
    for pattern in expect:
        found = con.expect([pattern, KERNEL_PANIC], deadline - con.clock())
        if found is None or found[0] != 0:
            report.error = (f"never saw {pattern.pattern!r}" if found is None
                            else f"the installer's kernel failed: {found[1].group(0)}")
            return
        report.seen.append(found[1].group(0))
    found = con.expect([QUESTION, KERNEL_PANIC], deadline - con.clock())
    if found is None or found[0] != 0:
        report.error = ("the installer asked no question in time" if found is None
                        else f"the installer's kernel failed: {found[1].group(0)}")
        return
    report.question = found[1].group(0).strip()
    report.ok = True
