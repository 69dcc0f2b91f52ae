"""Reproducible builds: the same inputs and mirror state give the same bits.

With SOURCE_DATE_EPOCH set (or --reproducible, which takes the mirror's
Release date when it is not set), every timestamp that reaches an output is
clamped to it, password salts are derived from it, and nothing random (logs,
caches, host keys, machine-id) is left in the root.
"""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import hashlib
import logging
import os
import re

from vmdebootstrap.errors import BuildError, UsageError
from vmdebootstrap.host.passwords import UserSpec, hash_password, parse_user
from vmdebootstrap.plan import Plan
from vmdebootstrap.root.cache import fetch_release

log = logging.getLogger("vmdebootstrap")


def env_epoch(environ: os._Environ[str] | dict[str, str] = os.environ) -> int | None:
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


def epoch_for(plan: Plan) -> int | None:
    """The build's SOURCE_DATE_EPOCH, or None for a normal build."""
    epoch = env_epoch()
    if epoch is None and plan.settings.reproducible:
        epoch = release_date(fetch_release(plan.mirror, plan.distribution))
        log.info("reproducible build: SOURCE_DATE_EPOCH=%d (the mirror's Release date)", epoch)
    return epoch


def salt_seed(epoch: int, name: str, hostname: str) -> bytes:
    # Predictable by design: a reproducible image cannot have a random salt.
    # It still differs per user, host name and build date.
    return hashlib.sha256(f"vmdebootstrap:{epoch}:{hostname}:{name}".encode()).digest()[:16]


def reproducible_plan(plan: Plan, epoch: int) -> Plan:
    """The plan with salts derived from the epoch instead of random ones."""
    s = plan.settings
    users: list[UserSpec] = []
    for value in s.user:
        name = value.partition("/")[0]
        seed = salt_seed(epoch, name, s.hostname)
        users.append(parse_user(value, hasher=functools.partial(hash_password, seed=seed)))
    root_hash = plan.root_password_hash
    if s.root_password is not None:
        root_hash = hash_password(s.root_password, seed=salt_seed(epoch, "root", s.hostname))
    return dataclasses.replace(plan, users=tuple(users), root_password_hash=root_hash)


def enter(plan: Plan) -> Plan:
    """Set the build up for reproducibility if asked; returns the plan to use."""
    epoch = epoch_for(plan)
    if epoch is None:
        return plan
    # Every child (mmdebstrap, dpkg, update-initramfs, mksquashfs, the
    # hook) honours SOURCE_DATE_EPOCH from its environment.
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
    return dataclasses.replace(reproducible_plan(plan, epoch), epoch=epoch)
