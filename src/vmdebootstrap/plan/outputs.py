"""Which output this run writes, and whether its paths can be written.

Each output kind checks its own path (vmdebootstrap.outputs.kinds); planning
adds what every path needs: a directory that exists and can be written.
"""

from __future__ import annotations

import os
from pathlib import Path

from vmdebootstrap.intent.options import OUTPUT_KINDS
from vmdebootstrap.intent.plan import Targets
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.outputs.kinds import KINDS, TARBALL_SUFFIXES  # noqa: F401 (plan API)
from vmdebootstrap.plan.facts import Host
from vmdebootstrap.plan.findings import Findings

COMPRESSORS = ("xz", "zstd", "gzip", "lz4", "lzo", "lzma")
# mksquashfs -Xcompression-level ranges; the other compressors take no level.
COMPRESSION_LEVELS = {"gzip": (1, 9), "lzo": (1, 9), "zstd": (1, 22)}
PATH_OPTIONS = (*OUTPUT_KINDS, "log")
# --dump-config leaves this one out: a config file often serves several outputs.
NO_OUTPUT = "no output given: use one of --image, --tarball, --squash or --iso"


def check_outputs(s: Settings, host: Host, found: Findings) -> str:
    """The one output kind of this run, or 'none' when not exactly one is given."""
    outputs = s.outputs
    if "--iso" in outputs and "--squash" in outputs:
        outputs = [o for o in outputs if o != "--squash"]  # kept beside the ISO
    if not outputs:
        found.problems.append(NO_OUTPUT)
    elif len(outputs) > 1:
        found.problems.append(f"only one output per run: {' and '.join(outputs)} were "
                              "given together")
    for name in PATH_OPTIONS:
        value = getattr(s, name)
        if value is not None:
            found.problems.extend(path_problems(name, value))
    if s.owner and not host.user_exists(s.owner):
        found.problems.append(f"--owner: no user {s.owner!r} on this host")
    found.problems.extend(compression_problems(s.squash_compression))
    if s.layered and s.no_cache and ("--squash" in outputs or "--iso" in outputs):
        found.problems.append("--layered stacks the build's changes on the cached root, so it "
                              "needs the root cache: drop --no-cache")
    return outputs[0].lstrip("-") if len(outputs) == 1 else "none"


def path_problems(option: str, path: str) -> list[str]:
    """What is wrong with the path given to --OPTION (an output kind or --log)."""
    if not path.strip():
        return [f"--{option}: empty path"]
    problems = writable_parent_problems(option, path)
    if option in KINDS:
        problems += KINDS[option].problems(path)
    return problems


def existing_ancestor(path: Path) -> Path:
    """``path``, or its nearest parent that exists: what a build that
    creates the missing directories must be able to write to."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable_parent_problems(option: str, path: str) -> list[str]:
    parent = Path(path).resolve().parent
    if option == "squash":
        parent = existing_ancestor(parent)  # its parents are created, as 1.x did
    if not parent.is_dir():
        return [f"--{option}: directory {parent} does not exist; create it first"]
    if not os.access(parent, os.W_OK):
        return [f"--{option}: directory {parent} is not writable"]
    return []


def compression_problems(value: str) -> list[str]:
    """--squash-compression: COMPRESSOR[:LEVEL], as mksquashfs takes them."""
    comp, colon, level = value.partition(":")
    where = f"--squash-compression: {value!r}"
    if comp not in COMPRESSORS:
        return [f"{where}: use one of {', '.join(COMPRESSORS)}, optionally with :LEVEL"]
    if not colon:
        return []
    limits = COMPRESSION_LEVELS.get(comp)
    if limits is None:
        return [f"{where}: {comp} takes no level (levels: "
                + ", ".join(f"{c} {lo}-{hi}" for c, (lo, hi) in COMPRESSION_LEVELS.items())
                + ")"]
    lo, hi = limits
    if not (level.isascii() and level.isdigit() and lo <= int(level) <= hi):
        return [f"{where}: the {comp} level must be a number from {lo} to {hi}"]
    return []


def targets_of(s: Settings, output: str) -> Targets:
    path = Path(getattr(s, output, None) or "")
    squash = Path(s.squash) if output == "iso" and s.squash else None
    pkglist = None
    if s.pkglist and output != "squash":  # a squash directory always has its list
        pkglist = path.with_name(path.name + ".packages")
    return Targets(kind=output, path=path, squash_dir=squash, pkglist=pkglist, owner=s.owner,
                   keep_on_failure=s.keep_on_failure, compression=s.squash_compression,
                   layered=s.layered and output in ("squash", "iso"))


def log_file_of(s: Settings) -> Path | None:
    return Path(s.log) if s.log and s.log != "none" else None
