"""Running commands inside the root."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

# The host's TMPDIR does not exist inside the root: mktemp in mkinitramfs
# and friends would fail there.  The root's own /tmp does.
CHROOT_ENV: Mapping[str, str] = {"TMPDIR": "/tmp"}


def chroot_argv(root: Path, argv: list[str]) -> list[str]:
    return ["chroot", str(root), *argv]


def chroot_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment additions for a command run through chroot_argv()."""
    return {**CHROOT_ENV, **(extra or {})}
