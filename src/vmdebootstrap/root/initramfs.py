"""The root's initramfs: made once per bootstrap, fast under qemu-user.

The kernel's postinst makes its initramfs, then initramfs-tools' trigger
(live-boot and others activate it) makes it all over again: half a minute
each natively, many minutes under qemu-user.  While apt installs,
update-initramfs is diverted to a stand-in that does nothing (as
live-build does); once every package is set up, the real one makes each
kernel's initramfs once, with every hook in place.  In a foreign root the
host's own file tools stand in for the target's meanwhile
(vmdebootstrap.host.native), which takes the arm64 initramfs from minutes
to seconds; the result is checked to hold none of them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

from vmdebootstrap.host.chroot import chroot_argv, chroot_env, chroot_mounts
from vmdebootstrap.host.native import carries_host_tools, native_tools
from vmdebootstrap.host.run import Runner
from vmdebootstrap.intent.plan import Plan

log = logging.getLogger("vmdebootstrap")

UPDATE_INITRAMFS = "/usr/sbin/update-initramfs"
UPDATE_INITRAMFS_ASIDE = UPDATE_INITRAMFS + ".vmdebootstrap"


def hold_hook() -> str:
    """mmdebstrap's --essential-hook that diverts update-initramfs to a stand-in."""
    real, aside = UPDATE_INITRAMFS, UPDATE_INITRAMFS_ASIDE
    return (f'--essential-hook=chroot "$1" dpkg-divert --quiet --local --divert {aside} '
            f'--add {real} && printf "#!/bin/sh\\nexit 0\\n" > "$1{real}" && '
            f'chmod 755 "$1{real}"')


def kernel_versions(root: Path) -> list[str]:
    """The versions of the kernels installed in ``root``, with modules and an image."""
    found = []
    for modules in sorted((root / "lib/modules").glob("*")):
        version = modules.name
        if modules.is_dir() and any((root / f"boot/{kind}-{version}").exists()
                                    for kind in ("vmlinuz", "vmlinux")):
            found.append(version)
    return found


@contextlib.contextmanager
def tools_for(plan: Plan, runner: Runner, root: Path) -> Iterator[Mapping[str, str]]:
    """The environment update-initramfs runs with: in a foreign root, with
    the host's file tools standing in (host.native)."""
    if plan.foreign is None:
        yield {}
        return
    with native_tools(runner, root) as env:
        yield env


def make_initramfs(plan: Plan, runner: Runner, root: Path) -> None:
    """The stand-in and its diversion gone (whether or not initramfs-tools
    came), then each kernel's initramfs made once (created, or updated
    where the kernel's postinst ran)."""
    real = root / UPDATE_INITRAMFS.lstrip("/")
    real.unlink(missing_ok=True)
    runner.run(chroot_argv(root, ["dpkg-divert", "--quiet", "--local", "--rename",
                                  "--remove", UPDATE_INITRAMFS]),
               env=chroot_env(), what="putting update-initramfs back in the root failed")
    versions = kernel_versions(root) if real.exists() else []
    if not versions:
        return
    with chroot_mounts(runner, root):
        for version in versions:
            op = "-u" if (root / f"boot/initrd.img-{version}").exists() else "-c"
            update(plan, runner, root, [op, "-k", version])


def update(plan: Plan, runner: Runner, root: Path, args: list[str]) -> None:
    """update-initramfs ARGS in the root (whose chroot mounts are in place)."""
    argv = chroot_argv(root, ["update-initramfs", *args])
    with tools_for(plan, runner, root) as env:
        runner.run(argv, env=chroot_env(env), label="initramfs",
                   what="making the initramfs failed")
    if not env:
        return
    leaked = [v for v in kernel_versions(root)
              if carries_host_tools(root / f"boot/initrd.img-{v}", runner)]
    if leaked:
        # A hook copied one of the programs it ran: the initramfs must hold
        # the target's own, so it is made again without the host's help.
        log.warning("a hook copied one of the host's tools into the initramfs of %s: making "
                    "it again with the target's own tools (slower)", ", ".join(leaked))
        runner.run(argv, env=chroot_env(), label="initramfs",
                   what="making the initramfs failed")
