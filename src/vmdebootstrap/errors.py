"""Exceptions that reach the user as one clear message, never a traceback."""

from __future__ import annotations


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


class Interrupted(VmdebootstrapError):
    """SIGINT or SIGTERM arrived; teardown still runs."""

    exit_code = 130
