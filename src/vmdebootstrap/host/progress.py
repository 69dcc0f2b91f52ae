"""What a person watching a build sees: one line per finished step with
the time it took and, on a terminal, a status line that moves while a long
step runs (packages unpacked out of the total, mksquashfs's percentage,
the boot test's elapsed time and what it waits for).

The status line is drawn only on a terminal and is wiped before any log
line is printed, so it never garbles a log, a pipe or the step lines.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO

log = logging.getLogger("vmdebootstrap")

# Between INFO and WARNING: step lines are shown without --verbose, while
# the commands and other details (INFO, DEBUG) go to the log.
STEP = 25
logging.addLevelName(STEP, "STEP")

# How often the status line is redrawn, in seconds.
TICK = 0.5

# Turns a command's output line into the detail the status line shows
# (None: the line says nothing new).
LineReader = Callable[[str], "str | None"]


def duration(seconds: float) -> str:
    """12 s, 3 min 05 s, 1 h 02 min."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


class StatusLine:
    """The status line of this process: the steps running (innermost
    last), when each began, and the latest detail."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.stream: TextIO | None = None  # a terminal, or None: draw nothing
        self.titles: list[tuple[str, float]] = []
        self.detail = ""
        self.reader: LineReader | None = None
        self.drawn = False
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    def attach(self, stream: TextIO | None) -> None:
        """Draw on ``stream`` if it is a terminal; otherwise never draw."""
        with self.lock:
            self.wipe()
            self.stream = stream if stream is not None and _is_terminal(stream) else None

    def text(self, now: float | None = None) -> str:
        with self.lock:
            if not self.titles:
                return ""
            title, started = self.titles[-1]
            elapsed = duration((now or time.monotonic()) - started)
            return f"{title} [{elapsed}]" + (f" {self.detail}" if self.detail else "")

    def draw(self) -> None:
        with self.lock:
            if self.stream is None or not self.titles:
                return
            width = shutil.get_terminal_size((80, 24)).columns - 1
            self.stream.write("\r\x1b[K" + self.text()[:width])
            self.stream.flush()
            self.drawn = True

    def wipe(self) -> None:
        """Clear the line, so that a log line can take its place."""
        with self.lock:
            if self.drawn and self.stream is not None:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            self.drawn = False

    def push(self, title: str) -> None:
        with self.lock:
            self.titles.append((title, time.monotonic()))
            self.detail = ""
            self._start_ticker()
        self.draw()

    def pop(self) -> None:
        with self.lock:
            self.titles.pop()
            self.detail = ""
            if not self.titles:
                self.wipe()
                self._stop.set()

    def set_detail(self, detail: str) -> None:
        with self.lock:
            self.detail = detail

    def feed(self, line: str) -> None:
        """A line of a running command's output."""
        with self.lock:
            reader = self.reader
        if reader is not None:
            detail = reader(line)
            if detail is not None:
                self.set_detail(detail)

    def _start_ticker(self) -> None:
        if self.stream is None or (self._ticker is not None and self._ticker.is_alive()):
            return
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, args=(self._stop,), daemon=True)
        self._ticker.start()

    def _tick(self, stop: threading.Event) -> None:
        while not stop.wait(TICK):
            self.draw()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


STATUS = StatusLine()


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """A step of the build: its title while it runs, one line with its
    time when it is done (a failure is reported by the error instead)."""
    log.info("%s ...", title)
    started = time.monotonic()
    STATUS.push(title)
    try:
        yield
    finally:
        STATUS.pop()
    log.log(STEP, "%s: %s", title, duration(time.monotonic() - started))


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Time one phase of the build for the log (``phase NAME: 1.234 s``),
    which the benchmarks add up; a phase that fails logs nothing."""
    started = time.monotonic()
    yield
    log.debug("phase %s: %.3f s", name, time.monotonic() - started)


def detail(text: str) -> None:
    """What the running step is doing now (its waits, its counts)."""
    STATUS.set_detail(text)
    STATUS.draw()


def echo(stream: TextIO) -> Callable[[str], None]:
    """print() to ``stream`` for code that prints rather than logs: the
    status line is wiped first and drawn again after."""
    def say(text: str) -> None:
        with STATUS.lock:
            STATUS.wipe()
            print(text, file=stream, flush=True)
            STATUS.draw()
    return say


@contextlib.contextmanager
def reading(reader: LineReader) -> Iterator[None]:
    """Let ``reader`` turn the output lines of the commands run meanwhile
    into the status line's detail."""
    with STATUS.lock:
        previous, STATUS.reader = STATUS.reader, reader
    try:
        yield
    finally:
        with STATUS.lock:
            STATUS.reader = previous


class AptCounter:
    """Counts what apt and dpkg report (mmdebstrap --verbose, debootstrap,
    apt-get in the root): packages downloaded, unpacked and set up, out
    of the total apt announced."""

    TOTAL = re.compile(r"^\d+ upgraded, (\d+) newly installed")
    # "Get:7 URL SUITE/COMPONENT ARCH PACKAGE ARCH VERSION [SIZE]": a
    # package; an index ("Get:2 URL SUITE/COMPONENT ARCH Packages [...]") has
    # fewer fields.
    GET = re.compile(r"^Get:\d+(?: \S+){6} \[")
    DEBOOTSTRAP = re.compile(r"^I: (Retrieving|Validating|Extracting|Unpacking|Configuring) (\S+)")

    def __init__(self) -> None:
        self.total = 0
        self.got = self.unpacked = self.set_up = 0

    def __call__(self, line: str) -> str | None:
        if m := self.TOTAL.match(line):
            # mmdebstrap's apt runs twice (the essential set, then the rest)
            self.total += int(m.group(1))
        elif self.GET.match(line):
            self.got += 1
        elif line.startswith("Unpacking "):
            self.unpacked += 1
        elif line.startswith("Setting up "):
            self.set_up += 1
        elif m := self.DEBOOTSTRAP.match(line):
            return f"{m.group(1).lower()} {m.group(2)}"
        elif line.startswith("I: "):
            return line[3:].rstrip(".")
        else:
            return None
        return self.summary()

    def summary(self) -> str:
        """The latest phase only, so the line stays short."""
        of = f"/{self.total}" if self.total else ""
        if self.unpacked or self.set_up:
            return f"{self.unpacked}{of} unpacked, {self.set_up}{of} set up"
        return f"{self.got}{of} packages downloaded" if self.got else ""


# mksquashfs's progress bar: "[=====-     ] 1234/5678  21%"
_SQUASH_BAR = re.compile(r"\]\s+(\d+)/(\d+)\s+(\d+)%\s*$")


def squash_percentage(line: str) -> str | None:
    if m := _SQUASH_BAR.search(line):
        return f"mksquashfs {m.group(3)}% ({m.group(1)}/{m.group(2)} blocks)"
    return None


# "xorriso : UPDATE :  25.44% done, estimate finish ..."
_XORRISO = re.compile(r"^xorriso : UPDATE :\s+(\d+)(?:\.\d+)?% done")


def output_progress(line: str) -> str | None:
    """mksquashfs's or xorriso's percentage, while an output is written."""
    if m := _XORRISO.match(line):
        return f"xorriso {m.group(1)}%"
    return squash_percentage(line)


def is_progress_bar(line: str) -> bool:
    """A redraw of a progress bar: not worth a line in the log."""
    return _SQUASH_BAR.search(line) is not None
