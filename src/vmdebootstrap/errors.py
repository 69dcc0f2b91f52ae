"""Exceptions that reach the user as one clear message, never a traceback."""

from __future__ import annotations

import signal
from collections.abc import Iterator


class VmdebootstrapError(Exception):
    """A failure the user can act on; str() is the whole message."""

    exit_code = 1


class UsageError(VmdebootstrapError):
    """Bad options or config values, found before anything is written."""

    exit_code = 2

    def __init__(self, problems: list[str] | str) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems = problems
        super().__init__("\n".join(problems))


class BuildError(VmdebootstrapError):
    """A build step failed."""


class NoSpace(BuildError):
    """Out of room, in words that already say what to free or to raise:
    error diagnosis leaves it as it is."""


class MirrorError(BuildError):
    """The mirror could not be read (its Release file, an index, a file)."""


class Interrupted(VmdebootstrapError):
    """SIGINT, SIGTERM or SIGHUP arrived; teardown still runs.  Exit 130 as
    1.x did for both Ctrl-C and kill; 129 for a hang-up (a dropped ssh
    session), as a shell reports it."""

    exit_code = 130

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        if signum == signal.SIGHUP:
            self.exit_code = 128 + signal.SIGHUP


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it, outermost first; each once."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__
