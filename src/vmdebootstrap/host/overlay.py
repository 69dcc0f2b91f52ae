"""A root shown through an overlay, or copied: how a build takes a cached tree.

On a cache hit a live or tarball build mounts the cached tree as the
read-only lower layer of an overlay and works on the merged view, so nothing
is copied; a disk image needs the files in its own filesystem and copies.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from vmdebootstrap.host import userns
from vmdebootstrap.host.resources import mounted
from vmdebootstrap.host.run import Runner

# A changed file is copied up whole, data included (metacopy=off), and a
# renamed directory is recorded as a redirect to its old path
# (redirect_dir=on; off, rename(2) of a lower directory fails with EXDEV).
# So the upper layer means the same on top of any copy of the lower one:
# live-boot, which mounts with redirect_dir=on, stacks it on the base
# squashfs for --layered.  Hard links are not tracked across layers
# (index=off): nothing here is exported over NFS.
OVERLAY_OPTIONS = "redirect_dir=on,metacopy=off,index=off,xino=off"
# Without root, overlayfs keeps its marks in user.overlay.* attributes and
# refuses redirect_dir: renaming a lower directory then fails with EXDEV,
# and mv, dpkg and cp copy instead, as they do across filesystems.
USERNS_OPTIONS = "userxattr,metacopy=off,index=off,xino=off"


@contextlib.contextmanager
def overlay(runner: Runner, lower: Path, upper: Path, target: Path) -> Iterator[Path]:
    """``target`` shows the read-only tree ``lower`` with every change
    written to ``upper`` (created here, beside its overlay work directory):
    ``lower`` itself never changes.  Unmounted on exit like every mount."""
    scratch = upper.with_name(upper.name + ".work")
    upper.mkdir()
    scratch.mkdir()
    # The merged root directory takes its owner and mode from the upper one.
    st = lower.stat()
    os.chown(upper, st.st_uid, st.st_gid)
    os.chmod(upper, stat.S_IMODE(st.st_mode))
    extra = USERNS_OPTIONS if userns.inside() else OVERLAY_OPTIONS
    options = f"lowerdir={lower},upperdir={upper},workdir={scratch},{extra}"
    with mounted(runner, "overlay", target, fstype="overlay", options=options):
        yield target


def move(src: Path, dst: Path) -> None:
    """os.replace(), also for a directory from the lower layer of an overlay
    mounted without redirect_dir (see USERNS_OPTIONS), which fails with
    EXDEV: the directory is then made anew at ``dst``, with its owner, mode
    and times, and its entries moved into it one by one."""
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV or src.is_symlink() or not src.is_dir():
            raise
        st = src.lstat()
        dst.mkdir()
        os.chown(dst, st.st_uid, st.st_gid)
        os.chmod(dst, stat.S_IMODE(st.st_mode))
        for entry in src.iterdir():
            move(entry, dst / entry.name)
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        src.rmdir()


def overlay_problem(*paths: Path) -> str | None:
    """Why an overlay cannot take these paths as its options, or None."""
    for path in paths:
        if any(c in str(path) for c in ",:\\"):
            return f"{path} has a comma, colon or backslash, which overlay options cannot hold"
    return None


def copy_tree(runner: Runner, source: Path, dest: Path) -> None:
    """Copy a root with its owners, modes, times, hard links, ACLs and
    extended attributes (file capabilities among them)."""
    runner.run(["cp", "--archive", "--reflink=auto", "--no-target-directory",
                str(source), str(dest)], label="cp", what=f"copying {source} to {dest} failed")
