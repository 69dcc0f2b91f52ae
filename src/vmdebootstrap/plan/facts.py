"""Facts about the build host, injected so that planning can be tested without root."""

from __future__ import annotations

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


@dataclass(frozen=True)
class Host:
    """Facts about the build host; injected so unit tests need no root."""

    arch: str = field(default_factory=binfmt.host_arch)
    etc_apt: Path = Path("/etc/apt")
    binfmt_dir: Path = Path("/proc/sys/fs/binfmt_misc")
    today: date | None = None
    cwd: Path = field(default_factory=Path.cwd)
    user_exists: Callable[[str], bool] = lambda name: _user_exists(name)
