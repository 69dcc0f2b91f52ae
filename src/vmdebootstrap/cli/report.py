"""How a run ends badly: the plan's refusals (each naming its option), a
known low-level cause explained, anything else as one clear message."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from vmdebootstrap.cli.parser import printable
from vmdebootstrap.errors import BuildError, UsageError, VmdebootstrapError
from vmdebootstrap.intent.options import OPTIONS, Kind
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan.outputs import NO_OUTPUT

if TYPE_CHECKING:
    from vmdebootstrap.intent.plan import Plan

log = logging.getLogger("vmdebootstrap")


def checked_plan(make_plan: Callable[[Settings], Plan], settings: Settings, *,
                 need_output: bool = True) -> Plan | None:
    """make_plan, with a path the system cannot even look at (too long, a
    loop of symbolic links...) reported as the bad value it is.  Without
    need_output, a missing output is no problem (and there is no Plan)."""
    try:
        return make_plan(settings)
    except OSError as exc:
        name = os.fsdecode(exc.filename) if exc.filename is not None else ""
        options = [f"--{o.name}" for o in OPTIONS if o.kind is Kind.STR
                   and name and getattr(settings, o.dest) in (name, os.path.basename(name))]
        where = options[0] if options else "a path given"
        short = name if len(name) <= 80 else name[:77] + "..."
        raise UsageError(f"{where}: {short}: {exc.strerror or exc}") from None
    except UsageError as exc:
        problems = [p for p in exc.problems if need_output or p != NO_OUTPUT]
        if problems:
            raise UsageError(problems) from None
        return None


def plan_problems(settings: Settings, known: list[str], *, need_output: bool = True
                  ) -> list[str]:
    """The plan's other complaints, leaving out options already reported
    (a bad value was replaced by its default, which may draw a second,
    misleading complaint)."""
    from vmdebootstrap.plan import make_plan  # late: tests replace it

    bad = {p.split(":")[0].split()[0] for p in known}
    try:
        checked_plan(make_plan, settings, need_output=need_output)
    except UsageError as exc:
        return [p for p in exc.problems if not any(b in p for b in bad)]
    return []


def explained(exc: BaseException, plan: Plan | None) -> VmdebootstrapError | None:
    """The clear message for a known low-level cause (a full disk, the
    mirror...); the original error, with the command's last lines, is logged."""
    from vmdebootstrap.diagnose import explain

    clear = explain(exc, Path(tempfile.gettempdir()), plan)
    if clear is not None:
        log.debug("the failure behind the error below: %s", exc)
    return clear


def unexpected(exc: Exception) -> VmdebootstrapError:
    log.debug("unexpected error", exc_info=exc)
    if isinstance(exc, OSError):
        name = f": {exc.filename}" if exc.filename is not None else ""
        return BuildError(f"{exc.strerror or exc}{name}")
    return BuildError(f"internal error: {type(exc).__name__}: {exc} (please report this "
                      "bug; with --log FILE the log has the traceback)")


def report(exc: VmdebootstrapError) -> None:
    text = str(exc)
    if isinstance(exc, UsageError):
        text = "\n".join(exc.problems)
        # One "vmdebootstrap: error:" line per problem.
        message = "\n".join(f"vmdebootstrap: error: {printable(p)}" for p in exc.problems)
    else:
        message = "\n".join(f"vmdebootstrap: {printable(line)}"
                            for line in f"error: {text}".splitlines())
    log.debug("error: %s", text)
    for handler in log.handlers:
        handler.flush()
    print(message, file=sys.stderr)
