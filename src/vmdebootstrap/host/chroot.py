"""Running commands inside the root, and the chroot's view of the host
meanwhile: proc, sys, dev and run mounted inside it, daemons kept from
starting, and the host's DNS settings."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from vmdebootstrap.host import resources, userns
from vmdebootstrap.host.resources import mounted, unmount_under
from vmdebootstrap.host.run import Runner

log = logging.getLogger("vmdebootstrap")

# The host's TMPDIR does not exist inside the root: mktemp in mkinitramfs
# and friends would fail there.  The root's own /tmp does.
CHROOT_ENV: Mapping[str, str] = {"TMPDIR": "/tmp"}


def chroot_argv(root: Path, argv: list[str]) -> list[str]:
    return ["chroot", str(root), *argv]


def chroot_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment additions for a command run through chroot_argv()."""
    return {**CHROOT_ENV, **(extra or {})}


@contextlib.contextmanager
def chroot_mounts(runner: Runner, root: Path) -> Iterator[Path]:
    """proc, sys, devpts and a tmpfs /run inside the root, for chroot commands.

    The root's own /dev (device nodes made by the bootstrap tool) is used
    as it is: the host's /dev is never bind-mounted, so nothing in the
    build can delete host device nodes.  Without root, where the bootstrap
    could make none, single host nodes are bound onto files for the while.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(mounted(runner, "proc", root / "proc", "proc"))
        if userns.inside():
            # Without root: sysfs can only be mounted by the owner of the
            # network namespace, and no device node can be made.
            stack.enter_context(rbound(runner, Path("/sys"), root / "sys"))
            if not (root / "dev" / "null").exists():
                stack.enter_context(_host_nodes_bound(runner, root / "dev"))
        else:
            stack.enter_context(mounted(runner, "sysfs", root / "sys", "sysfs", "ro"))
            if not (root / "dev" / "null").exists():
                _make_dev_nodes(root / "dev")
        stack.enter_context(
            mounted(runner, "devpts", root / "dev" / "pts", "devpts",
                    "newinstance,ptmxmode=0666,mode=0620,gid=5")
        )
        stack.enter_context(mounted(runner, "tmpfs", root / "run", "tmpfs", "mode=0755"))
        try:
            yield root
        finally:
            resources.kill_processes_in(root)  # through the module: tests replace it


@contextlib.contextmanager
def rbound(runner: Runner, source: Path, target: Path) -> Iterator[Path]:
    """``source`` and what is mounted below it, at ``target`` (its files
    stay the host's: only real root writes them)."""
    target.mkdir(parents=True, exist_ok=True)
    runner.run(["mount", "--rbind", str(source), str(target)],
               what=f"bind-mounting {source} on {target}")
    try:
        yield target
    finally:
        # In a user namespace the mounts below a copy of the host's are
        # locked to it: only the whole tree can go, detached at its top.
        runner.run(["umount", "--lazy", str(target)], check=False, label="umount")
        failed = unmount_under(target, runner)
        if failed:
            log.error("could not unmount %s", ", ".join(failed))


@contextlib.contextmanager
def _host_nodes_bound(runner: Runner, dev: Path) -> Iterator[None]:
    """The host's device nodes bound onto empty files in the root's /dev
    (what mmdebstrap does where mknod is not allowed); the files go when
    the mounts do, so the image's /dev is left as the bootstrap left it."""
    made: list[Path] = []
    with contextlib.ExitStack() as stack:
        stack.callback(_unlink_all, made)
        dev.mkdir(parents=True, exist_ok=True)
        for name in _DEV_NODES:
            node = dev / name
            if node.exists() or node.is_symlink():
                continue
            node.touch()
            made.append(node)
            runner.run(["mount", "--bind", f"/dev/{name}", str(node)],
                       what=f"bind-mounting /dev/{name} on {node}")
            stack.callback(unmount_under, node, runner)
        ptmx = dev / "ptmx"
        if not ptmx.exists() and not ptmx.is_symlink():
            ptmx.symlink_to("pts/ptmx")
            made.append(ptmx)
        yield


def _unlink_all(paths: list[Path]) -> None:
    for path in reversed(paths):
        path.unlink(missing_ok=True)


_DEV_NODES = {
    "null": (1, 3), "zero": (1, 5), "full": (1, 7),
    "random": (1, 8), "urandom": (1, 9), "tty": (5, 0),
}


def _make_dev_nodes(dev: Path) -> None:
    dev.mkdir(parents=True, exist_ok=True)
    for name, (major, minor) in _DEV_NODES.items():
        node = dev / name
        if not node.exists():
            os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    ptmx = dev / "ptmx"
    if not ptmx.exists() and not ptmx.is_symlink():
        ptmx.symlink_to("pts/ptmx")


POLICY_RC_D = "#!/bin/sh\n# vmdebootstrap: no daemons start while the image is built\nexit 101\n"


@contextlib.contextmanager
def daemons_blocked(root: Path) -> Iterator[None]:
    """policy-rc.d so package scripts do not start services in the chroot."""
    path = root / "usr/sbin/policy-rc.d"
    existed = path.exists()
    if not existed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(POLICY_RC_D)
        path.chmod(0o755)
    try:
        yield
    finally:
        if not existed:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@contextlib.contextmanager
def host_resolv_conf(root: Path, host: Path = Path("/etc/resolv.conf")) -> Iterator[None]:
    """The host's DNS settings inside the root while the build runs apt there.

    The image's own /etc/resolv.conf is often a symlink into /run (systemd-
    resolved) that leads nowhere in a chroot; it is moved aside, not written
    through, and put back afterwards."""
    target = root / "etc/resolv.conf"
    saved = root / "etc/.resolv.conf.vmdebootstrap"
    had = target.exists() or target.is_symlink()
    if had:
        os.replace(target, saved)
    try:
        if host.exists():
            shutil.copyfile(host, target)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        if had:
            os.replace(saved, target)
