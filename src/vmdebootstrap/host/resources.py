"""Resources a build holds, each a context manager for one ExitStack.

Teardown reads the real mount table (/proc/self/mountinfo) and unmounts
deepest first; it never guesses and never sleeps.  Trees are removed only
when nothing is mounted below them, and removal never crosses into another
filesystem, so a forgotten bind mount of the host's /dev cannot be emptied.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from vmdebootstrap.errors import BuildError
from vmdebootstrap.host.run import Runner, signals_held

log = logging.getLogger("vmdebootstrap")

MOUNTINFO = Path("/proc/self/mountinfo")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points(mountinfo: str | None = None) -> list[str]:
    """All mount points, in the order the kernel lists them."""
    if mountinfo is None:
        mountinfo = MOUNTINFO.read_text()
    points = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            points.append(_unescape(fields[4]))
    return points


def mounts_under(path: str | os.PathLike[str], mountinfo: str | None = None) -> list[str]:
    """Mount points at or below ``path``, deepest (and latest) first."""
    base = os.path.realpath(path)
    found = [
        p for p in mount_points(mountinfo) if p == base or p.startswith(base.rstrip("/") + "/")
    ]
    # Later mounts can stack on earlier ones at the same point: reverse the
    # kernel's order, then sort by depth so children go before parents.
    found.reverse()
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def unmount_under(
    path: str | os.PathLike[str],
    runner: Runner,
    *,
    mountinfo: Callable[[], str] = lambda: MOUNTINFO.read_text(),
    include_self: bool = True,
) -> list[str]:
    """Unmount everything at or below ``path``; return what could not be.

    Each subtree is made private first (isolate), so that no unmount here
    propagates to the mounts it was copied from."""
    failed: list[str] = []
    isolated: set[str] = set()
    # Stacked mounts show up once per layer; loop until nothing changes.
    for _ in range(64):
        here = os.path.realpath(path)
        points = [
            p for p in mounts_under(path, mountinfo())
            if (include_self or p != here) and p not in failed
        ]
        if not points:
            break
        for top in _topmost(points):
            if top not in isolated:
                isolate(runner, top)
                isolated.add(top)
        target = points[0]
        result = runner.run(["umount", target], check=False, label="umount")
        if result.returncode != 0:
            # Busy: detach it from the tree so the build dir can go; the
            # kernel frees it when the last user closes it.
            lazy = runner.run(["umount", "--lazy", target], check=False, label="umount")
            if lazy.returncode != 0:
                failed.append(target)
        isolated.discard(target)  # a mount stacked below it is now on top
    here = os.path.realpath(path)
    failed += [p for p in mounts_under(path, mountinfo())
               if (include_self or p != here) and p not in failed]
    return failed


def _topmost(points: list[str]) -> list[str]:
    """The points with no other point of the list above them."""
    return [p for p in points
            if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in points)]


def isolate(runner: Runner, point: str) -> None:
    """Make the mount at ``point`` and everything below it private.

    With shared propagation (systemd mounts / shared), a bind or rbind
    mount of the host's /dev made by a hook or a tool is a peer of the
    host's own mounts: unmounting the copy of /dev/pts or /dev/shm would
    unmount the host's /dev/pts and /dev/shm too.  A private mount has no
    peers, so unmounting it touches nothing else.  Only real mount points
    (from the kernel's own table) are changed."""
    if point not in mount_points(Path("/proc/self/mountinfo").read_text()):
        return
    runner.run(["mount", "--make-rprivate", point], check=False, label="mount")


def processes_in_root(root: str | os.PathLike[str], proc: Path = Path("/proc")) -> list[int]:
    """PIDs whose root directory is ``root`` or below it."""
    base = os.path.realpath(root).rstrip("/")
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            link = os.readlink(entry / "root")
        except OSError:
            continue
        if link == base or link.startswith(base + "/"):
            pids.append(int(entry.name))
    return pids


def kill_processes_in(root: str | os.PathLike[str]) -> list[int]:
    """Stop daemons a package or hook left running inside the root."""
    pids = processes_in_root(root)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and processes_in_root(root):
            time.sleep(0.1)
        pids = processes_in_root(root)
        if not pids:
            break
    if pids:
        log.warning("processes still running inside %s: %s", root, pids)
    return pids


def remove_tree(path: str | os.PathLike[str], mountinfo: str | None = None) -> None:
    """rm -rf that refuses to go below a mount point or onto another device."""
    top = Path(path)
    if not top.exists() and not top.is_symlink():
        return
    busy = mounts_under(top, mountinfo)
    if busy:
        raise BuildError(
            f"refusing to remove {top}: still mounted below it: {', '.join(busy)}"
        )
    top_dev = top.lstat().st_dev
    skipped: list[str] = []

    def walk(directory: Path) -> bool:
        """Empty ``directory``; False if something in it had to be kept."""
        emptied = True
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return True
        for entry in entries:
            # An entry that vanished meanwhile (a lock file its program
            # removed as it was stopped) is as good as removed.
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev != top_dev:
                    skipped.append(entry.path)
                    emptied = False
                elif walk(Path(entry.path)):
                    with contextlib.suppress(FileNotFoundError):
                        os.rmdir(entry.path)
                else:
                    emptied = False
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        return emptied

    if top.is_dir() and not top.is_symlink():
        walk(top)
        if skipped:
            raise BuildError(f"refusing to remove other filesystems below {top}: {skipped}")
        top.rmdir()
    else:
        top.unlink()


@contextlib.contextmanager
def temp_dir(runner: Runner, prefix: str = "vmdebootstrap-",
             keep_on_failure: bool = False, parent: Path | None = None) -> Iterator[Path]:
    """A private work directory under $TMPDIR, removed even on failure, and
    even when Ctrl-C arrives while it is being created or removed.  With
    ``keep_on_failure`` a failed build's directory stays (unmounted) for
    debugging, and the log says where."""
    path: Path | None = None
    try:
        with signals_held():
            path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        os.chmod(path, 0o755)
        log.debug("work directory %s", path)
        yield path
    except BaseException:
        # The build's own error stays the one the user sees.
        if path is not None:
            _drop_quietly(path, runner, keep_on_failure)
        raise
    try:
        _drop_work_dir(path, runner, keep=False)
    except BuildError:
        raise
    except BaseException:
        # Interrupted half-way through removing it: finish, then stop.
        _drop_quietly(path, runner, keep=False)
        raise


def _drop_quietly(path: Path, runner: Runner, keep: bool) -> None:
    try:
        _drop_work_dir(path, runner, keep)
    except Exception as exc:
        log.error("%s", exc)


def _drop_work_dir(path: Path, runner: Runner, keep: bool) -> None:
    leftover = unmount_under(path, runner)
    if keep:
        log.warning("the build failed; its work directory is kept in %s (remove it when "
                    "done)", path)
    elif leftover:
        raise BuildError(f"not removing {path}: could not unmount {', '.join(leftover)}")
    else:
        remove_tree(path)


@contextlib.contextmanager
def mounted(runner: Runner, source: str, target: Path, fstype: str | None = None,
            options: str | None = None, bind: bool = False) -> Iterator[Path]:
    argv = ["mount"]
    if bind:
        argv.append("--bind")
    if fstype:
        argv += ["-t", fstype]
    if options:
        argv += ["-o", options]
    if not target.is_file():  # a file is bound over a file
        target.mkdir(parents=True, exist_ok=True)
    argv += [source, str(target)]
    runner.run(argv, what=f"mounting {source} on {target}")
    try:
        yield target
    finally:
        # Whatever got mounted on top of us in the meantime goes first.
        failed = unmount_under(target, runner)
        if failed:
            log.error("could not unmount %s", ", ".join(failed))
