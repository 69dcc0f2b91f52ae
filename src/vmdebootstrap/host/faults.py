"""A fault seam for the failure-injection tests.

checkpoint() is inert unless the environment variable VMDEBOOTSTRAP_FAULT
names the step: ``configure:pause`` stops the build at that checkpoint until
a signal arrives (so a test can interrupt a phase that is too short to hit
from outside), ``configure:fail`` raises a BuildError there.  Several may be
given, comma separated.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

from vmdebootstrap.errors import BuildError

log = logging.getLogger("vmdebootstrap")

FAULT_ENV = "VMDEBOOTSTRAP_FAULT"
PAUSE_LIMIT = 600.0  # a paused build gives up waiting for its signal after this


def faults(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """step -> action from VMDEBOOTSTRAP_FAULT ("configure:pause,hook:fail")."""
    text = (os.environ if environ is None else environ).get(FAULT_ENV, "")
    wanted: dict[str, str] = {}
    for item in text.split(","):
        step, _, action = item.strip().partition(":")
        if step:
            wanted[step] = action or "fail"
    return wanted


def checkpoint(step: str) -> None:
    """A named point in the build where a test can inject a fault."""
    action = faults().get(step)
    if action is None:
        return
    if action == "pause":
        log.warning("fault injection (%s): paused at %s; waiting for a signal",
                    FAULT_ENV, step)
        deadline = time.monotonic() + PAUSE_LIMIT
        while time.monotonic() < deadline:
            time.sleep(0.1)
        raise BuildError(f"fault injection ({FAULT_ENV}): no signal came while paused "
                         f"at {step}")
    raise BuildError(f"fault injection ({FAULT_ENV}): failing at {step} as asked")
