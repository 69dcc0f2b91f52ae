"""Reproducible builds: the same inputs and mirror state give the same bits.

With SOURCE_DATE_EPOCH set (or --reproducible, which takes the mirror's
Release date when it is not set), every child the build runs gets it in its
environment, every timestamp that reaches an output is clamped to it,
password salts are derived from it, and nothing random (logs, caches, host
keys, machine-id) is left in the root.
"""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import hashlib
import logging
import os
import re
from collections.abc import Mapping, Sequence

from vmdebootstrap.errors import BuildError, UsageError
from vmdebootstrap.host.passwords import hash_password, parse_user, split_user
from vmdebootstrap.host.run import Result, Runner
from vmdebootstrap.intent.plan import Plan
from vmdebootstrap.root.cache import MirrorRelease

log = logging.getLogger("vmdebootstrap")


def env_epoch(environ: Mapping[str, str] = os.environ) -> int | None:
    value = environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 12:
        raise UsageError(f"SOURCE_DATE_EPOCH: {value!r} is not a number of seconds")
    return int(value)


def release_date(release: bytes) -> int:
    m = re.search(rb"^Date: (.+)$", release, re.M)
    if not m:
        raise BuildError("the mirror's Release file has no Date: field")
    return int(email.utils.parsedate_to_datetime(m.group(1).decode()).timestamp())


def epoch_for(plan: Plan, release: MirrorRelease) -> int | None:
    """The build's SOURCE_DATE_EPOCH, or None for a normal build."""
    epoch = env_epoch()
    if epoch is None and plan.reproducible:
        epoch = release_date(release.data())
        log.info("reproducible build: SOURCE_DATE_EPOCH=%d (the mirror's Release date)", epoch)
    return epoch


def salt_seed(epoch: int, name: str, hostname: str) -> bytes:
    # Predictable by design: a reproducible image cannot have a random salt.
    # It still differs per user, host name and build date.
    return hashlib.sha256(f"vmdebootstrap:{epoch}:{hostname}:{name}".encode()).digest()[:16]


def reproducible_plan(plan: Plan, epoch: int) -> Plan:
    """The plan with salts derived from the epoch instead of random ones."""
    system = plan.system
    hostname = system.hostname
    users = list(system.users)
    if plan.user_secrets:  # else the hashes are given (vmdebootstrap verify)
        users = []
    for value in plan.user_secrets:
        seed = salt_seed(epoch, split_user(value)[0], hostname)
        users.append(parse_user(value, hasher=functools.partial(hash_password, seed=seed)))
    root_hash = system.root_password_hash
    if plan.root_secret is not None:
        root_hash = hash_password(plan.root_secret, seed=salt_seed(epoch, "root", hostname))
    system = dataclasses.replace(system, users=tuple(users), root_password_hash=root_hash)
    iso = plan.iso and dataclasses.replace(plan.iso, source_date_epoch=epoch)
    return dataclasses.replace(plan, system=system, iso=iso, epoch=epoch)


class EpochRunner:
    """A Runner that gives every child SOURCE_DATE_EPOCH: mmdebstrap, dpkg,
    update-initramfs, mksquashfs, xorriso and the hook all honour it."""

    def __init__(self, runner: Runner, epoch: int) -> None:
        self.inner, self.epoch = runner, epoch

    def run(self, argv: Sequence[str | os.PathLike[str]], *,
            env: Mapping[str, str] | None = None, **kwargs: object) -> Result:
        merged = {"SOURCE_DATE_EPOCH": str(self.epoch), **(env or {})}
        return self.inner.run(argv, env=merged, **kwargs)  # type: ignore[arg-type]


def enter(plan: Plan, runner: Runner, release: MirrorRelease) -> tuple[Plan, Runner]:
    """Set the build up for reproducibility if asked: the plan and runner to use."""
    epoch = epoch_for(plan, release)
    if epoch is None:
        return plan, runner
    return reproducible_plan(plan, epoch), EpochRunner(runner, epoch)
