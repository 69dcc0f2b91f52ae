"""The one way an output or a cache entry appears: staged, checked, renamed.

Everything vmdebootstrap leaves behind for the user (a tarball, a squash
directory, an ISO, a disk image, a package list) and every cache entry is
written under a temporary name in the target's own directory, flushed to
disk, checked, and only then renamed onto its final name, with SIGINT,
SIGTERM and SIGHUP held so that the rename happens whole or not at all.  A
failed build or a failed check removes the temporary file and never
touches a previous output of the same name.

An output's checksum file (NAME.sha256 beside a file, SHA256SUMS inside a
directory) is written in the same step, hashed right after the output is
written and checked, and appears and disappears with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from vmdebootstrap.host.digest import Digests, file_sha256, sha256sums, tree_sha256
from vmdebootstrap.host.run import signals_held

log = logging.getLogger("vmdebootstrap")

Check = Callable[[Path], None]
PART_SUFFIX = ".part"
# The names debian-cd and live-build users look for: NAME.sha256 beside a
# single file (a SHA256SUMS there would clash between outputs in one
# directory), SHA256SUMS inside a directory of files.
CHECKSUM_SUFFIX = ".sha256"
SUMS_NAME = "SHA256SUMS"


def checksum_path(final: Path) -> Path:
    """The checksum file published beside the single-file output ``final``."""
    return final.with_name(final.name + CHECKSUM_SUFFIX)


def _flush(path: Path) -> None:
    """Data on disk before the rename, so a crash cannot leave a renamed
    but empty file (ext4 and xfs may reorder the two)."""
    paths = sorted(path.rglob("*")) if path.is_dir() else [path]
    for p in paths:
        if p.is_file() and not p.is_symlink():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _discard(tmp: Path, final: Path, keep_failed: bool) -> None:
    """Remove (or keep) what a failed build staged.  This runs while the
    build's own error is on its way out: a failure here (the filesystem
    turned read-only) is logged, never raised over it."""
    try:
        _drop(tmp, final, keep_failed)
    except OSError as exc:
        log.error("could not remove the staged %s: %s; remove it by hand", tmp,
                  exc.strerror or exc)


def _drop(tmp: Path, final: Path, keep_failed: bool) -> None:
    if keep_failed and tmp.exists():
        failed = final.with_name(final.name + ".failed")
        if failed.is_dir() and not failed.is_symlink():
            shutil.rmtree(failed)
        os.replace(tmp, failed)
        log.warning("the build failed; what it wrote of %s is kept as %s", final.name, failed)
    elif tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def _temp_file(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=PART_SUFFIX, dir=final.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def scratch_file(beside: Path, *, keep_failed: bool = False) -> Iterator[Path]:
    """A temporary file beside ``beside`` (same filesystem, so as sparse as
    the output will be) that is always removed; on failure, with
    ``keep_failed``, it is kept as NAME.failed instead."""
    tmp: Path | None = None
    try:
        with signals_held():
            tmp = _temp_file(beside)
        yield tmp
    except BaseException:
        if tmp is not None:
            _discard(tmp, beside, keep_failed)
        raise
    tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_file(final: Path, *, check: Check | None = None, mode: int = 0o644,
                keep_failed: bool = False, checksum: bool = False) -> Iterator[Path]:
    """A temporary path beside ``final``; on success it is flushed, checked
    and renamed onto ``final``.  On failure it is removed (or, with
    ``keep_failed``, renamed to NAME.failed for debugging).  With
    ``checksum``, FINAL.sha256 (checkable with ``sha256sum -c`` from
    final's directory) is staged too and renamed with it."""
    tmp: Path | None = None
    sums: Path | None = None
    try:
        with signals_held():
            tmp = _temp_file(final)
        yield tmp
        _flush(tmp)
        if check is not None:
            check(tmp)
        if checksum:
            with signals_held():
                sums = _temp_file(checksum_path(final))
            # Read right after it was written, while the page cache most
            # likely still holds it: the one read of the output for this.
            sums.write_text(sha256sums({final.name: file_sha256(tmp)}))
            _flush(sums)
            os.chmod(sums, mode)
        with signals_held():
            os.chmod(tmp, mode)
            _rename_with_checksum(tmp, final, sums)
        _fsync_dir(final.parent)
    except BaseException:
        if sums is not None:
            _discard(sums, checksum_path(final), keep_failed=False)
        if tmp is not None:
            _discard(tmp, final, keep_failed)
        raise


def _rename_with_checksum(tmp: Path, final: Path, sums: Path | None) -> None:
    """The old checksum file goes first and the new one comes last: a
    checksum file beside ``final`` is never one of another build."""
    if sums is None:
        os.replace(tmp, final)
        return
    checksum_path(final).unlink(missing_ok=True)
    os.replace(tmp, final)
    os.replace(sums, checksum_path(final))


@contextlib.contextmanager
def staged_dir(final: Path, *, check: Check | None = None, mode: int = 0o644,
               checksums: bool = False, digests: Digests | None = None) -> Iterator[Path]:
    """A temporary directory beside ``final`` for the files of a directory
    output.  On success its files are flushed, checked and moved into
    ``final`` (created if need be); files of ``final`` that the build did
    not write are left alone.  On failure nothing in ``final`` changes.
    With ``checksums``, SHA256SUMS lists every file the build wrote there
    (through ``digests``, which may know some of them already)."""
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp: Path | None = None
    try:
        with signals_held():
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=PART_SUFFIX,
                                        dir=parent))
        yield tmp
        _flush(tmp)
        if check is not None:
            check(tmp)
        if checksums:
            sums = tree_sha256(tmp, digests or Digests(), skip=[SUMS_NAME])
            (tmp / SUMS_NAME).write_text(sha256sums(sums))
            _flush(tmp / SUMS_NAME)
        for f in tmp.iterdir():
            os.chmod(f, mode)
        with signals_held():
            _move_in(tmp, final)
        _fsync_dir(final)
    except BaseException:
        if tmp is not None:
            _discard(tmp, final, keep_failed=False)
        raise


def _move_in(stage: Path, final: Path) -> None:
    if not final.exists():
        stage.chmod(0o755)
        os.replace(stage, final)  # one rename: the whole directory appears at once
        return
    # File by file: an old SHA256SUMS goes first and the new one comes
    # last, so one in the directory never lists files of another build.
    if (stage / SUMS_NAME).exists():
        (final / SUMS_NAME).unlink(missing_ok=True)
    for f in sorted(stage.iterdir(), key=lambda p: (p.name == SUMS_NAME, p.name)):
        os.replace(f, final / f.name)
        # rename(2) does nothing when both names are links to one file (a
        # --layered base squashfs linked from the cache both times).
        f.unlink(missing_ok=True)
    stage.rmdir()


def leftovers(directory: Path) -> list[Path]:
    """Temporary files of unfinished publishes in ``directory``."""
    return sorted(p for p in directory.glob(f".*{PART_SUFFIX}"))
