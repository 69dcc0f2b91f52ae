"""From a low-level failure to one message the user can act on.

explain() is what cli.main asks when a build fails: it recognises the common
causes in the exception chain (a full disk, an unreachable mirror, a suite
the mirror does not have, a Release signature that does not verify, an
output that cannot be written) and returns one BuildError that says what
failed and what to do.  Anything it does not recognise is left as it is.
The original error, with the failing command's last lines, stays in the log.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from vmdebootstrap.errors import (
    BuildError,
    Interrupted,
    MirrorError,
    NoSpace,
    UsageError,
    VmdebootstrapError,
    exception_chain,
)
from vmdebootstrap.host.run import CommandError
from vmdebootstrap.outputs.kinds import KINDS

if TYPE_CHECKING:
    from vmdebootstrap.intent.plan import Plan

log = logging.getLogger("vmdebootstrap")


GiB = 1024**3
ENOSPC_TEXT = "No space left on device"
# tar's word for a write cut short, which on a local disk means it is full.
SHORT_WRITE = re.compile(r"Wrote only \d+ of \d+ bytes")
# apt, mmdebstrap and debootstrap wording, most specific first.
BAD_SIGNATURE = (
    "NO_PUBKEY", "BADSIG", "EXPKEYSIG", "REVKEYSIG", "is not signed",
    "The following signatures were invalid",
    "The following signatures couldn't be verified",
    "Invalid Release signature", "Release signed by unknown key",
)
NO_SUITE = ("does not have a Release file",)
NO_MIRROR = (
    "Could not resolve", "Temporary failure resolving", "Could not connect",
    "Connection refused", "Network is unreachable", "Connection timed out",
    "Unable to connect", "Failed to fetch", "Failed getting release file",
)
# Commands whose output speaks about the build mirror.
BOOTSTRAP_COMMANDS = ("mmdebstrap", "debootstrap", "apt-get")


# --- explaining failures ----------------------------------------------------------------


def _lines(e: BaseException) -> list[str]:
    """What the failure said: a command's output, else the message.  A
    command's argv is left out: it names the mirror and the options, which
    would match the patterns below whatever the command printed."""
    if isinstance(e, CommandError):
        return list(e.tail)
    return str(e).splitlines()


def _is_bootstrap(e: BaseException) -> bool:
    if isinstance(e, CommandError):
        return any(Path(a).name in BOOTSTRAP_COMMANDS for a in e.argv[:4])
    return isinstance(e, MirrorError)


def _is_enospc(e: BaseException) -> bool:
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return True
    return any(_says_full(line) for line in _lines(e))


def _says_full(line: str) -> bool:
    return ENOSPC_TEXT in line or SHORT_WRITE.search(line) is not None


def _enospc_paths(e: BaseException) -> list[Path]:
    """Absolute paths the failure names as the place it could not write."""
    paths: list[Path] = []
    if isinstance(e, OSError):
        paths += [Path(os.fsdecode(f)) for f in (e.filename, e.filename2)
                  if isinstance(f, (str, bytes))]
    for line in _lines(e):
        if _says_full(line):
            paths += [Path(m) for m in re.findall(r"(/[^\s:'\"]+)", line)]
    return [p for p in paths if p.is_absolute()]


def _under(path: Path, base: Path) -> bool:
    path, base = Path(os.path.abspath(path)), Path(os.path.abspath(base))
    return path == base or base in path.parents


def _output_places(plan: Plan | None) -> list[tuple[str, Path, Path]]:
    """(option, final path, directory it is written in) for each output."""
    if plan is None:
        return []
    targets = plan.targets
    given: list[tuple[str, Path]] = [(targets.kind, targets.path)]
    if targets.squash_dir is not None:
        given.append(("squash", targets.squash_dir))
    if plan.log_file is not None:
        given.append(("log", plan.log_file))
    places = []
    for name, path in given:
        final = Path(os.path.abspath(path))
        directory = final if name in KINDS and KINDS[name].directory else final.parent
        places.append((name, final, directory))
    return places


def space_needed(plan: Plan | None) -> float:
    """A rough size in GiB of what a build keeps in its work area at once: the
    root, the downloaded packages, and the copy a cache or output takes."""
    if plan is None:
        return 2.0
    root = 0.3 if plan.variant in ("minbase", "essential", "apt", "required") else 0.5
    if plan.kernel_package:
        root += 0.4
    need = root * 2.5 + (0.5 if plan.output == "iso" else 0.0)
    return max(0.5, round(need * 2) / 2)


def _gib(value: float) -> str:
    return f"{value:g} GiB"


def _enospc_message(exc: BaseException, work: Path | None, plan: Plan | None) -> str:
    paths = [p for e in exception_chain(exc) for p in _enospc_paths(e)]
    for option, final, directory in _output_places(plan):
        if any(_under(p, directory) for p in paths):
            if option == "log":
                return (f"ran out of disk space in {directory}, where the --log file is "
                        "written: free space there, or log elsewhere")
            return (f"ran out of disk space in {directory}, where the --{option} output "
                    f"{final.name} is written: free space there, or write it to a bigger "
                    f"filesystem (it needs about {_gib(space_needed(plan) / 2)})")
    if plan is not None and plan.cache_dir is not None:
        cache = plan.cache_dir
        if any(_under(p, cache) for p in paths):
            return (f"ran out of disk space in the cache {cache}: free space there, or give "
                    "another --cache-dir (or --no-cache)")
    where = f"{work} (TMPDIR, the build's work area)" if work else "the build's work area"
    return (f"ran out of disk space in {where}: free space, or set TMPDIR to a bigger "
            f"filesystem (the build needs about {_gib(space_needed(plan))})")


def _mirror_of(plan: Plan | None, lines: list[str]) -> str:
    if plan is not None:
        return plan.mirror
    for line in lines:
        m = re.search(r"\b(?:https?|file|ftp):/\S+", line)
        if m:
            return m.group(0)
    return "(the mirror)"


def _mirror_message(exc: BaseException, plan: Plan | None) -> str | None:
    boot = [e for e in exception_chain(exc) if _is_bootstrap(e)]
    lines = [line for e in boot for line in _lines(e)]
    if not lines:
        return None
    text = "\n".join(lines)
    mirror = _mirror_of(plan, lines)
    # With verification turned off, apt still complains, but only as a warning.
    unchecked = plan is not None and not plan.check_signatures
    if not unchecked and any(p in text for p in BAD_SIGNATURE):
        return ("the mirror's Release signature does not verify: refusing to continue "
                f"(check --mirror {mirror}, or the keyring)")
    suite = plan.distribution if plan is not None else None
    missing = any(p in text for p in NO_SUITE) or (
        ("404" in text or "HTTP Error 404" in text)
        and (suite is None or f"/dists/{suite}/" in text or f" {suite} Release" in text
             or f"Release file of {suite} " in text))
    if missing:
        what = f"no suite {suite}" if suite else "no such suite"
        return f"the mirror {mirror} has {what}: check --distribution (and --mirror)"
    if any(p in text for p in NO_MIRROR):
        return f"cannot reach the mirror {mirror}: check --mirror and the network"
    return None


def _output_message(exc: BaseException, plan: Plan | None) -> str | None:
    for e in exception_chain(exc):
        if not isinstance(e, OSError) or e.filename is None:
            continue
        name = Path(os.path.abspath(os.fsdecode(e.filename)))
        for option, final, directory in _output_places(plan):
            if name != final and not _under(name, directory):
                continue
            why = e.strerror or str(e)
            is_dir_kind = option in KINDS and KINDS[option].directory
            if e.errno == errno.EISDIR or (final.is_dir() and not is_dir_kind):
                return (f"--{option}: {final} is a directory: remove it or choose another "
                        "file name")
            # A staging file beside the output: name the directory instead.
            what = (f"in {name.parent}" if name.name.startswith(f".{final.name}.")
                    else str(name))
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                return (f"--{option}: cannot write {what}: {why}: choose a directory you "
                        "can write to, or fix its permissions")
            return f"--{option}: cannot write {what}: {why}"
    return None


def explain(exc: BaseException, work: Path | None,
            plan: Plan | None = None) -> VmdebootstrapError | None:
    """One clear error for a known low-level cause of ``exc``, or None.

    ``work``: where the build keeps its work directory (TMPDIR); ``plan``,
    when known, names the mirror, suite and outputs in the message."""
    if isinstance(exc, (Interrupted, UsageError, KeyboardInterrupt)):
        return None
    if isinstance(exc, NoSpace):  # already says which size or space to change
        return None
    message: str | None = None
    if any(_is_enospc(e) for e in exception_chain(exc)):
        message = _enospc_message(exc, work, plan)
    if message is None:
        message = _mirror_message(exc, plan)
    if message is None:
        message = _output_message(exc, plan)
    if message is None:
        return None
    explained = BuildError(message)
    explained.__cause__ = exc
    return explained
