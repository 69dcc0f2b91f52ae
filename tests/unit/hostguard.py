"""A guard for the unit tests: none may change the real /etc or /var/cache,
or open a network connection.  Python's audit hooks see every file opened
for writing, every rename, removal and mode change, and every connect()."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

PROTECTED = ("/etc", "/var/cache")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
CHANGES = ("os.mkdir", "os.remove", "os.rmdir", "os.rename", "os.chmod", "os.chown",
           "os.symlink", "os.link", "os.truncate", "os.utime", "shutil.rmtree")

armed = False
violations: list[str] = []


def _protected(path: object) -> bool:
    if isinstance(path, int) or path is None:
        return False
    try:
        text = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return any(text == p or text.startswith(p + "/") for p in PROTECTED)


def check(event: str, args: tuple[Any, ...]) -> str | None:
    """What ``event`` would do that the unit tests must not, or None."""
    if event == "open":
        path, mode, flags = args
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
            bool(isinstance(flags, int) and flags & WRITE_FLAGS)
        if writes and _protected(path):
            return f"opened {path} for writing"
    elif event in CHANGES:
        # symlink and link name what the new link points at first: only the
        # link is written.  rename changes both of its paths.
        changed = args[1:2] if event in ("os.symlink", "os.link") else \
            args[:2] if event == "os.rename" else args[:1]
        if any(_protected(a) for a in changed if isinstance(a, (str, bytes, os.PathLike))):
            return f"{event} {' '.join(map(str, changed))}"
    elif event == "socket.connect":
        sock, address = args
        if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6):
            return f"connected to {address}"
    return None


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if armed:
        found = check(event, args)
        if found:
            violations.append(found)


sys.addaudithook(_hook)  # audit hooks cannot be removed: `armed` switches it
