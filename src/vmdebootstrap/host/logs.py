"""Where vmdebootstrap's messages go: the console (step lines, warnings,
and with --verbose every command) and the --log file, secrets masked in
both."""

from __future__ import annotations

import logging
import os
import sys
from typing import Protocol

from vmdebootstrap.errors import UsageError
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


def setup_logging(s: LogSettings, masker: Masker, to_file: bool = True) -> None:
    """Console logging, and the --log file when to_file (never in a dry run)."""
    log.setLevel(logging.DEBUG)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
    console = logging.StreamHandler(sys.stdout if s.verbose else sys.stderr)
    console.setLevel(logging.INFO if s.verbose else logging.WARNING)
    console.setFormatter(MaskingFormatter("%(message)s", masker))
    log.addHandler(console)
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
