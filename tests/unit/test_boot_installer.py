"""boot.installer: the conversation that starts d-i from the ISO's menu."""

from __future__ import annotations

import re

from vmdebootstrap.boot import console as bc
from vmdebootstrap.boot.installer import InstallerReport, _converse

GRUB_MENU = ("\x1b[H\x1b[2J  Live system (amd64)\r\n  Live system (amd64 fail-safe mode)\r\n"
             "  Install\r\n  Graphical install\r\n")
DI = ("[    0.000000] Linux version 6.1.0-28-amd64\r\n"
      "VMDBT_42_PRESEEDED\r\n"
      "\x1b[1;24r\x1b[4l\x1b[?25l  lqqqqu \x1b[1;44m[!!] Configure the network tqqqqk\x1b[0m\r\n")
MARK = re.compile("VMDBT_42_PRESEEDED")


class Guest:
    def __init__(self, before: list[str], after_key: list[str]) -> None:
        self.queue = [c.encode() for c in before]
        self.after_key = after_key
        self.typed: list[bytes] = []
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def read(self, timeout: float) -> bytes | None:
        self.now += 0.5
        if self.queue:
            return self.queue.pop(0)
        self.now += timeout
        return None

    def write(self, data: bytes) -> None:
        self.typed.append(data)
        self.queue += [c.encode() for c in self.after_key]

    def talk(self, expect: list[re.Pattern[str]]) -> InstallerReport:
        report = InstallerReport()
        _converse(bc.Console(self.read, self.write, clock=self.clock), report, "i", expect,
                  self.now + 600)
        return report


def test_the_hotkey_starts_the_installer_which_asks_a_question() -> None:
    guest = Guest([GRUB_MENU], [DI])
    report = guest.talk([MARK])
    assert report.ok and report.error is None
    assert guest.typed == [b"i"]  # the hotkey alone: no newline for d-i to take as an answer
    assert report.seen == ["VMDBT_42_PRESEEDED"]
    assert report.question == "[!!] Configure the network"


def test_no_menu_no_key() -> None:
    guest = Guest(["BdsDxe: failed to load Boot0001\r\n"], [DI])
    report = guest.talk([])
    assert not report.ok and guest.typed == []
    assert report.error == "the boot menu never showed an Install entry"


def test_a_preseed_that_was_not_read() -> None:
    guest = Guest([GRUB_MENU], [DI.replace("VMDBT_42_PRESEEDED\r\n", "")])
    report = guest.talk([MARK])
    assert not report.ok and report.error == "never saw 'VMDBT_42_PRESEEDED'"


def test_a_kernel_panic_is_named() -> None:
    guest = Guest([GRUB_MENU], ["Kernel panic - not syncing: VFS: Unable to mount root fs\r\n"])
    report = guest.talk([])
    assert not report.ok
    assert report.error == ("the installer's kernel failed: Kernel panic - not syncing: "
                            "VFS: Unable to mount root fs")


def test_no_question_in_time() -> None:
    guest = Guest([GRUB_MENU], ["[    0.000000] Linux version 6.1.0-28-amd64\r\n"])
    report = guest.talk([])
    assert not report.ok and report.error == "the installer asked no question in time"


def test_a_title_still_arriving_is_not_taken() -> None:
    guest = Guest([GRUB_MENU], ["VMDBT_42_PRESEEDED\r\n lqqu [!] D",
                                "etect network hardware tqqk\r\n"])
    report = guest.talk([MARK])
    assert report.ok and report.question == "[!] Detect network hardware"
