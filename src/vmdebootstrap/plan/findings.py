"""What the checkers find: problems, which refuse the build, and notes, which don't.

Every checker in this package takes the settings (and what else it needs)
plus a Findings, adds what it finds, and returns the value it decided.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from vmdebootstrap.errors import UsageError


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def caught(self) -> Iterator[None]:
        """Keep the problems of a UsageError raised inside, and go on."""
        try:
            yield
        except UsageError as exc:
            self.problems.extend(exc.problems)

    def refuse_if_any(self) -> None:
        """Raise one UsageError listing every problem found."""
        if self.problems:
            raise UsageError(self.problems)
