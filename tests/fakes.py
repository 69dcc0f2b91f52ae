"""Test doubles shared by the unit tests (never part of the product)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from vmdebootstrap.host.run import Result


class RecordingRunner:
    """Records argv instead of running anything; for unit tests.

    ``responses`` maps the first word of a command to the stdout it returns.
    """

    def __init__(self, responses: Mapping[str, str] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.inputs: list[bytes | None] = []
        self.responses = dict(responses or {})

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        capture: bool = False,
        label: str | None = None,
        timeout: float | None = None,
        check: bool = True,
        what: str | None = None,
        reap: bool = False,
    ) -> Result:
        args = [os.fspath(a) for a in argv]
        self.calls.append(args)
        self.inputs.append(input)
        return Result(0, self.responses.get(Path(args[0]).name, ""))

    def commands(self) -> list[str]:
        return [shlex.join(c) for c in self.calls]

