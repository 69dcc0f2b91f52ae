"""Checksums of files: cache keys, installer downloads, and the checksum
files written with every output.

A checksum file is in the format ``sha256sum -c`` reads (GNU coreutils,
and busybox, which live-boot's initramfs uses): one line per file, the hex
digest, two spaces, the name; sorted by name (bytewise, so the same in
every locale), each line ending in LF.  Names with a backslash, newline or
carriage return are escaped as GNU sha256sum escapes them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

BLOCK = 1 << 20
_HEX = re.compile(r"[0-9a-f]{64}")


_ZEROS = bytes(BLOCK)


def file_sha256(path: Path) -> str:
    """The file's SHA-256.  Holes are not read: a trimmed disk image is
    mostly holes, and hashing zeros from memory is several times faster
    than reading them through the kernel."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        fd = fh.fileno()
        size, pos = os.fstat(fd).st_size, 0
        while pos < size:
            data = _seek(fd, pos, os.SEEK_DATA, missing=size, unsupported=pos)
            _hash_zeros(h, min(data, size) - pos)
            if data >= size:
                break
            end = _seek(fd, data, os.SEEK_HOLE, missing=size, unsupported=size)
            fh.seek(data)
            left = min(end, size) - data
            while left > 0:
                block = fh.read(min(BLOCK, left))
                if not block:
                    return h.hexdigest()  # the file shrank while being read
                h.update(block)
                left -= len(block)
            pos = min(end, size)
    return h.hexdigest()


def _seek(fd: int, pos: int, whence: int, *, missing: int, unsupported: int) -> int:
    """lseek's SEEK_DATA/SEEK_HOLE; ``missing`` when there is none after pos
    (ENXIO), ``unsupported`` where the filesystem cannot tell."""
    try:
        return os.lseek(fd, pos, whence)
    except OSError as e:
        return missing if e.errno == errno.ENXIO else unsupported


def _hash_zeros(h: hashlib._Hash, count: int) -> None:
    view = memoryview(_ZEROS)
    while count > 0:
        step = min(count, BLOCK)
        h.update(view[:step])
        count -= step


class Digests:
    """SHA-256 of files, each file read once however often it is asked for.

    An output can need a file's digest twice (the squashfs is listed in the
    ISO's sha256sum.txt and in a kept squash directory's SHA256SUMS), and a
    live system's squashfs runs to gigabytes.  A file is known by its device,
    inode, size and mtime, which survive the rename that publishes it; the
    memory lives as long as the one output being written, during which
    nothing rewrites the files it hashes.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[int, int, int, int], str] = {}

    def sha256(self, path: Path) -> str:
        st = os.stat(path)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self._known:
            self._known[key] = file_sha256(path)
        return self._known[key]


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}


def _escape(name: str) -> tuple[str, str]:
    """GNU sha256sum's escaping: a leading backslash on the line says the
    name has backslash escapes."""
    if not any(c in name for c in _ESCAPES):
        return "", name
    return "\\", "".join(_ESCAPES.get(c, c) for c in name)


def sha256sums(sums: Mapping[str, str]) -> str:
    """The text of a checksum file from ``{name: hex digest}``."""
    lines = []
    for name in sorted(sums, key=os.fsencode):
        flag, shown = _escape(name)
        lines.append(f"{flag}{sums[name]}  {shown}\n")
    return "".join(lines)


def parse_sha256sums(text: str) -> dict[str, str]:
    """``{name: hex digest}`` from a checksum file (the inverse of
    sha256sums); raises ValueError on a line that is not one."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        escaped = line.startswith("\\")
        digest, sep, name = line.removeprefix("\\").partition("  ")
        if not sep or not name or not _HEX.fullmatch(digest):
            raise ValueError(f"not a sha256sum line: {line!r}")
        if escaped:
            name = _unescape(name)
        sums[name] = digest
    return sums


def _unescape(name: str) -> str:
    out, chars = [], iter(name)
    for c in chars:
        if c == "\\":
            nxt = next(chars, "")
            out.append({"\\": "\\", "n": "\n", "r": "\r"}.get(nxt, c + nxt))
        else:
            out.append(c)
    return "".join(out)


def tree_sha256(root: Path, digests: Digests, *, skip: Iterable[str] = ()) -> dict[str, str]:
    """``{relative path: digest}`` of every regular file under ``root``
    (symbolic links are not followed), but those named in ``skip``."""
    skipped = set(skip)
    sums: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in files:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if rel not in skipped and path.is_file() and not path.is_symlink():
                sums[rel] = digests.sha256(path)
    return sums
