"""Facts about the build host, injected so that planning can be tested without root."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from vmdebootstrap.host import binfmt


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


SYSTEM_CACHE = Path("/var/cache/vmdebootstrap")


def default_cache_dir(euid: int | None = None, environ: dict[str, str] | None = None) -> Path:
    """Root's builds share the system cache; a user's go to their own (XDG)."""
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return SYSTEM_CACHE
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CACHE_HOME", "")
    # The XDG spec: a relative value is invalid and ignored.
    base = Path(xdg) if xdg.startswith("/") else Path(env.get("HOME") or Path.home()) / ".cache"
    return base / "vmdebootstrap"


@dataclass(frozen=True)
class Host:
    """Facts about the build host; injected so unit tests need no root."""

    arch: str = field(default_factory=binfmt.host_arch)
    etc_apt: Path = Path("/etc/apt")
    binfmt_dir: Path = Path("/proc/sys/fs/binfmt_misc")
    today: date | None = None
    cwd: Path = field(default_factory=Path.cwd)
    user_exists: Callable[[str], bool] = lambda name: _user_exists(name)
    cache_dir: Path = field(default_factory=default_cache_dir)  # --cache-dir's default
