"""Running commands inside the root."""

from __future__ import annotations

from pathlib import Path


def chroot_argv(root: Path, argv: list[str]) -> list[str]:
    return ["chroot", str(root), *argv]
