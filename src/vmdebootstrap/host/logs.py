"""Where vmdebootstrap's messages go: the console (step lines, warnings,
and with --verbose every command) and the --log file, secrets masked in
both."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Sequence
from typing import Protocol, TextIO

from vmdebootstrap.errors import UsageError
from vmdebootstrap.host import progress
from vmdebootstrap.host.run import Masker

log = logging.getLogger("vmdebootstrap")


class LogSettings(Protocol):
    """The settings logging needs (intent's Settings has them)."""

    @property
    def verbose(self) -> bool: ...
    @property
    def log(self) -> str | None: ...
    @property
    def log_mode(self) -> int: ...
    @property
    def log_level(self) -> str: ...


class MaskingFormatter(logging.Formatter):
    def __init__(self, fmt: str, masker: Masker) -> None:
        super().__init__(fmt, datefmt="%Y-%m-%d %H:%M:%S")
        self.masker = masker

    def format(self, record: logging.LogRecord) -> str:
        return self.masker(super().format(record))


# extra= for records meant for the --log file only (its header).
FILE_ONLY = {"file_only": True}


class ConsoleHandler(logging.StreamHandler[TextIO]):
    """A console stream that shares its terminal with the status line:
    the line is wiped before a message and drawn again after it."""

    def emit(self, record: logging.LogRecord) -> None:
        with progress.STATUS.lock:
            progress.STATUS.wipe()
            super().emit(record)
            progress.STATUS.draw()


def _console(stream: TextIO, level: int, below: int | None, masker: Masker) -> logging.Handler:
    handler = ConsoleHandler(stream)
    handler.setLevel(level)
    handler.addFilter(lambda r: not getattr(r, "file_only", False)
                      and (below is None or r.levelno < below))
    handler.setFormatter(MaskingFormatter("%(message)s", masker))
    return handler


def setup_logging(s: LogSettings, masker: Masker, to_file: bool = True) -> None:
    """The console: step lines (and with --verbose the details) on stdout,
    warnings and errors on stderr, the status line on stdout if it is a
    terminal; and the --log file when to_file (never in a dry run)."""
    log.setLevel(logging.DEBUG)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
    log.addHandler(_console(sys.stdout, logging.INFO if s.verbose else progress.STEP,
                            logging.WARNING, masker))
    log.addHandler(_console(sys.stderr, logging.WARNING, None, masker))
    progress.STATUS.attach(sys.stdout)
    if to_file and s.log and s.log != "none":
        # The log can show the image's accounts and mirror: by default (--log-mode
        # 0600) not world-readable.
        try:
            fd = os.open(s.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, s.log_mode)
        except OSError as exc:
            raise UsageError(f"--log: cannot open {s.log}: {exc.strerror or exc}") from None
        os.fchmod(fd, s.log_mode)  # not the umask's, nor an existing file's mode
        fileh = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8"))
        level = "critical" if s.log_level == "fatal" else s.log_level
        fileh.setLevel(getattr(logging, level.upper()))
        fileh.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(message)s", masker))
        log.addHandler(fileh)


def log_header(version: str, argv: Sequence[str], settings: str) -> None:
    """The start of the --log file: what ran, and with which settings (the
    masker hides passwords typed on the command line; the settings text
    already leaves secrets out)."""
    log.info("vmdebootstrap %s", version, extra=FILE_ONLY)
    log.info("command line: %s", shlex.join(["vmdebootstrap", *argv]), extra=FILE_ONLY)
    for line in settings.splitlines():
        log.info("setting: %s", line, extra=FILE_ONLY)
