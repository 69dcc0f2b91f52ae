"""The serial-console conversation of the boot test: wait for the login
prompt, log in, prove a shell is running, run one command and capture its
output and exit status.

Everything here works on a byte stream given as two callables, so it is
tested with canned console text instead of a real guest.  Markers are typed
as ``VMDBT_$((6*7))`` and matched as ``VMDBT_42``, so the echo of a typed
command never counts as its output.
"""

from __future__ import annotations

import codecs
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from vmdebootstrap.host.run import Masker

log = logging.getLogger("vmdebootstrap.boot.boottest")


class ConsoleClosed(Exception):
    """QEMU closed the serial console (it exited)."""


class BootFailed(Exception):
    """The guest did not get where it had to; str() says how far it got."""


def default_command(user: str | None) -> str:
    cmd = "cat /etc/debian_version"
    if user and user != "root":
        # Passes only if sudo really gives root: the last sudo -n needs the
        # credentials cached by one of the two attempts before it.
        cmd += (" && { sudo -n true 2>/dev/null || printf '%s\\n' \"$PASSWORD\" | "
                "sudo -S -p '' true; } && test \"$(sudo -n id -u)\" = 0 && echo sudo-ok")
    return cmd


_ANSI = re.compile(r"\x1b(?:\[[0-9;?=>]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>78cDEHM])")
_PARTIAL_ESC = re.compile(r"\x1b[\[()]?[0-9;?=>]*[ -/]*$")


class Console:
    """Reads a byte stream, keeps a cleaned text buffer (no CR, no ANSI) and
    matches patterns in text not yet consumed by an earlier match."""

    def __init__(self, reader: Callable[[float], bytes | None], writer: Callable[[bytes], None],
                 *, echo: TextIO | None = None, masker: Masker | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = reader
        self._write = writer
        self.echo = echo
        self.mask = masker or Masker()
        self.clock = clock
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = ""
        self.text = ""
        self.pos = 0

    def _feed(self, data: bytes) -> None:
        raw = self._pending + self._decoder.decode(data)
        m = _PARTIAL_ESC.search(raw)
        self._pending = raw[m.start():] if m and len(raw) - m.start() < 32 else ""
        if self._pending:
            raw = raw[: len(raw) - len(self._pending)]
        clean = _ANSI.sub("", raw).replace("\r", "")
        if self.echo is not None:
            self.echo.write(self.mask(clean))
            self.echo.flush()
        self.text += clean
        if len(self.text) > 256 * 1024:
            cut = len(self.text) - 128 * 1024
            self.text = self.text[cut:]
            self.pos = max(0, self.pos - cut)

    def send(self, line: str, *, secret: bool = False) -> None:
        if secret:
            self.mask.add(line)
            log.debug("console <- ********")
        else:
            log.debug("console <- %s", self.mask(line))
        self._write((line + "\n").encode())

    def press(self, keys: str) -> None:
        """Type ``keys`` with no newline (a boot menu's hotkey)."""
        log.debug("console <- %r", keys)
        self._write(keys.encode())

    def expect(self, patterns: Sequence[re.Pattern[str]], timeout: float
               ) -> tuple[int, re.Match[str]] | None:
        """Index and match of the earliest matching pattern, or None on timeout."""
        deadline = self.clock() + timeout
        while True:
            hits = [(m.start(), i, m) for i, p in enumerate(patterns)
                    if (m := p.search(self.text, self.pos))]
            if hits:
                _, i, m = min(hits, key=lambda h: (h[0], h[1]))
                self.pos = m.end()
                return i, m
            left = deadline - self.clock()
            if left <= 0:
                return None
            data = self._read(min(left, 1.0))
            if data == b"":
                raise ConsoleClosed("the serial console closed (QEMU exited)")
            if data:
                self._feed(data)

    def tail(self, chars: int = 1500) -> str:
        return self.mask(self.text[-chars:])


# A kernel message can split "HOST login: " across lines, leaving " login: ".
LOGIN = re.compile(r"(?m)^(?!Last login)[ \t]*(?:[\w.-]+ )?login: *")
PASSWORD = re.compile(r"\bPassword: *")
INCORRECT = re.compile(r"Login incorrect")
FORCED_CHANGE = re.compile(r"You are required to change your password|"
                           r"password has expired|Current password:")
# The firmware (OVMF's boot manager) or shim refusing a loader whose
# signature the enrolled keys do not accept, as Secure Boot does.
REFUSED = re.compile(r"BdsDxe: failed to (?:load|start) .*: (?:Access Denied|Security Violation)"
                     r"|Verification failed: .*Security Violation.*")
FATAL = re.compile(r"Kernel panic - not syncing.*|^\(initramfs\) *|"
                   r"Unable to find a medium containing a live file system.*|"
                   r"Give root password for maintenance.*|You are in emergency mode.*|"
                   + REFUSED.pattern, re.MULTILINE)
MARK = "VMDBT_$((6*7))"      # what we type; the shell prints VMDBT_42
READY = re.compile(r"VMDBT_42_READY")
PW_PROMPT = re.compile(r"VMDBT_42_PW:")
BEGIN = re.compile(r"VMDBT_42_BEGIN\n?")
END = re.compile(r"\n?VMDBT_42_END_(\d+)")


def failure(match: re.Match[str]) -> str:
    """What a FATAL match means, for a message."""
    text = match.group(0).strip()
    if REFUSED.fullmatch(text):
        return f"the firmware refused the boot loader (Secure Boot): {text}"
    return f"the guest failed: {text}"


# The SecureBoot EFI variable: four bytes of attributes, then the value,
# 1 when the firmware enforces Secure Boot.  Readable by any user.
SECURE_BOOT_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
SECURE_BOOT_PROBE = f"od -An -tu1 {SECURE_BOOT_VAR}"
_VAR_BYTES = re.compile(r"(?m)^\s*(?:\d+\s+){4}(\d+)\s*$")
# What the kernel says at boot (the test's fallback when it does not log in).
KERNEL_SECURE_BOOT = re.compile(r"secureboot: Secure boot (enabled|disabled)")


def secure_boot_state(probe_output: str) -> str:
    """'enabled', 'disabled' or 'unknown', from SECURE_BOOT_PROBE's output."""
    m = _VAR_BYTES.search(probe_output)
    if m is None:
        return "unknown"
    return "enabled" if m.group(1) == "1" else "disabled"


@dataclass
class Session:
    seconds_to_login: float
    output: str
    returncode: int


def silent(_what: str) -> None:
    """A status callback that tells no one."""


def login_and_run(console: Console, *, user: str, password: str | None, command: str,
                  started: float, deadline: float, status: Callable[[str], None] = silent,
                  doing: str = "running the command") -> Session:
    """Log in on ``console`` and run ``command``; BootFailed says how far it got.
    ``status`` hears each new thing it waits for; ``doing`` is what it says
    while ``command`` runs."""
    def left() -> float:
        return max(0.0, deadline - console.clock())

    def expect(patterns: list[re.Pattern[str]], timeout: float, where: str
               ) -> tuple[int, re.Match[str]] | None:
        return _expect(console, patterns, min(timeout, left()), where, deadline)

    if password is not None:
        console.mask.add(password)
    status("waiting for the login prompt")
    expect([LOGIN], left(), "waiting for the login prompt")
    status(f"logging in as {user}")
    for attempt in range(3):
        console.send(user)
        found = expect([PASSWORD, INCORRECT, FORCED_CHANGE, LOGIN], 60, "waiting for Password:")
        if found is None or found[0] == 0:
            break
        if found[0] == 1:
            raise BootFailed(f"login as {user!r} was refused (Login incorrect)")
        if found[0] == 2:
            raise BootFailed("the account must change its password first; not supported")
        # another login prompt: the first one was reprinted, type the name again
        if attempt == 2:
            raise BootFailed("the login prompt keeps coming back")
    if found is not None:
        if password is None:
            raise BootFailed("the guest asks for a password but none was given (--user NAME/PW)")
        console.send(password, secret=True)
    while True:
        console.send(f" stty -echo 2>/dev/null; echo {MARK}_READY")
        found = expect([READY, INCORRECT, FORCED_CHANGE], 20, "waiting for a shell")
        if found is None:
            continue
        if found[0] == 1:
            raise BootFailed(f"login as {user!r} was refused (Login incorrect)")
        if found[0] == 2:
            raise BootFailed("the account must change its password first; not supported")
        break
    seconds = console.clock() - started
    if password is not None:
        console.send(" printf 'VMDBT_%s_PW:' $((6*7)); IFS= read -r PASSWORD")
        expect([PW_PROMPT], left(), "waiting for the shell to read the password")
        console.send(password, secret=True)
    status(doing)
    output, returncode = run_in_shell(console, command, deadline)
    return Session(seconds, output, returncode)


def _expect(console: Console, patterns: list[re.Pattern[str]], timeout: float, where: str,
            deadline: float) -> tuple[int, re.Match[str]] | None:
    """console.expect, failing on a FATAL line and at the deadline."""
    found = console.expect([*patterns, FATAL], timeout)
    if found and found[0] == len(patterns):
        raise BootFailed(f"{where}: {failure(found[1])}")
    if found is None and console.clock() >= deadline:
        raise BootFailed(f"timed out {where}")
    return found


def run_in_shell(console: Console, command: str, deadline: float) -> tuple[str, int]:
    """Run ``command`` in the shell login_and_run left: (output, exit status)."""
    left = max(0.0, deadline - console.clock())
    console.send(f" echo {MARK}_BEGIN; ( {command}\n ); echo {MARK}_END_$?")
    _expect(console, [BEGIN], left, "waiting for the command to start", deadline)
    start = console.pos
    found = _expect(console, [END], max(0.0, deadline - console.clock()),
                    "waiting for the command to finish", deadline)
    assert found is not None
    output = console.mask(console.text[start:found[1].start()])
    return output.strip("\n"), int(found[1].group(1))
