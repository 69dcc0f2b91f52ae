"""The build, top to bottom, inside one ExitStack.

Read build() to see the order of a build.  Every resource it takes (work
dir, image file, loop device, mounts, chroot mounts, daemon block, staged
outputs) is a context manager, so a failure or Ctrl-C anywhere unwinds
them in reverse.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap.diagnose import checkpoint
from vmdebootstrap.host.resources import (
    chroot_mounts,
    daemons_blocked,
    host_resolv_conf,
    staged_file,
    temp_dir,
)
from vmdebootstrap.host.run import Runner
from vmdebootstrap.outputs import files as out
from vmdebootstrap.outputs import iso
from vmdebootstrap.plan import Plan, iso_spec_of
from vmdebootstrap.root import bootstrap as bs
from vmdebootstrap.root import configure as cf
from vmdebootstrap.root import reproducible
from vmdebootstrap.root.cache import bootstrap_with_cache
from vmdebootstrap.root.hook import HookEnv, run_hook

log = logging.getLogger("vmdebootstrap")


@dataclass
class Context:
    """State discovered during a build (settings stay in the frozen Plan)."""

    plan: Plan
    runner: Runner
    work: Path
    root: Path


def step(message: str) -> None:
    log.info("%s", message)


def build(plan: Plan, runner: Runner) -> list[Path]:
    s = plan.settings
    started = time.monotonic()
    plan = reproducible.enter(plan)
    with contextlib.ExitStack() as stack:
        work = stack.enter_context(temp_dir(runner))
        ctx = Context(plan, runner, work, work / "root")
        if plan.output == "image":
            written = build_image(ctx)
        else:
            ctx.root.mkdir()
            populate(ctx)
            step(f"Writing the {plan.output} output")
            written = write_outputs(ctx)
        out.chown_outputs(written, s.owner)
    log.info("build finished in %.0f s: %s", time.monotonic() - started,
             ", ".join(str(p) for p in written))
    if s.boot_test:
        step("Boot test")
        boot_check(plan, written[0])
    return written


def boot_check(plan: Plan, output: Path) -> None:
    """Log in on the serial console as the first user with a password (or
    root), and check sudo when that user has it."""
    from vmdebootstrap.boot.boottest import check_output

    s = plan.settings
    login = next(((v.partition("/")[0], v.partition("/")[2]) for v in s.user
                  if v.partition("/")[2]), None)
    if login is None and s.root_password:
        login = ("root", s.root_password)
    check_output(output, arch=plan.arch, user=login[0] if login else None,
                 password=login[1] if login else None, log=log.info)


def populate(ctx: Context) -> None:
    """Bootstrap, configure and customise the root at ctx.root."""
    plan, runner, root = ctx.plan, ctx.runner, ctx.root
    with contextlib.ExitStack() as stack:
        step(f"Bootstrapping {plan.distribution} {plan.arch} with {plan.bootstrap_tool}")
        bootstrap_with_cache(plan, runner, root, ctx.work)
        bs.install_handler(plan, root)
        stack.callback(bs.remove_handler, plan, root)
        checkpoint("bootstrap")

        stack.enter_context(host_resolv_conf(root))
        step("Configuring the system")
        configure(ctx)
        if plan.hook:
            step(f"Running the customisation hook {plan.hook}")
            run_hook(runner, plan.hook, root, output_name(plan), hook_env(plan),
                     plan.settings.hook_timeout)
        if cf.needs_initramfs_update(plan):
            with chroot_mounts(runner, root), daemons_blocked(root):
                cf.update_initramfs(plan, runner, root)
        cf.clean_apt(root)
        cf.remove_build_leftovers(root)
        cf.make_safe_to_share(root)


def configure(ctx: Context) -> None:
    plan, runner, root = ctx.plan, ctx.runner, ctx.root
    cf.set_hostname(plan, root)
    with chroot_mounts(runner, root), daemons_blocked(root):
        cf.configure_accounts(plan, runner, root)
        checkpoint("configure")
        cf.configure_network(plan, root)
        cf.configure_serial_console(plan, root)
        cf.configure_apt(plan, root)


def build_image(ctx: Context) -> list[Path]:
    from vmdebootstrap.outputs import image

    plan, runner = ctx.plan, ctx.runner
    with image.staged_image(plan, runner) as staged:
        with image.attached(plan, runner, staged, ctx.work) as target:
            ctx.root = target.root
            populate(ctx)
            step("Installing the bootloader")
            image.install_bootloader(plan, runner, target)
            if plan.settings.pkglist:
                out.write_pkglist(runner, ctx.root, _pkglist_path(plan))
        step("Writing the image")
        return image.publish(plan, runner, staged) + (
            [_pkglist_path(plan)] if plan.settings.pkglist else [])


def _pkglist_path(plan: Plan) -> Path:
    final = Path(plan.settings.image or plan.settings.tarball or plan.settings.iso or "")
    return final.with_name(final.name + ".packages")


def hook_env(plan: Plan) -> HookEnv:
    return HookEnv(arch=plan.arch, distribution=plan.distribution, mirror=plan.mirror,
                   apt_mirror=plan.apt_mirror, components=plan.components)


def output_name(plan: Plan) -> str:
    return str(out.output_paths(plan)[0])


def write_outputs(ctx: Context) -> list[Path]:
    plan, runner, root = ctx.plan, ctx.runner, ctx.root
    s = plan.settings
    written: list[Path] = []
    if plan.output == "tarball":
        final = Path(s.tarball or "")
        with staged_file(final) as tmp:
            out.write_tarball(runner, root, tmp, final.name, plan.epoch)
        written.append(final)
    elif plan.output == "squash":
        final = Path(s.squash or "")
        with out.staged_dir(final) as stage:
            write_squash_dir(ctx, stage)
        written.append(final)
    elif plan.output == "iso":
        written += write_iso(ctx)
    if s.pkglist and plan.output in ("tarball", "iso"):
        out.write_pkglist(runner, root, _pkglist_path(plan))
        written.append(_pkglist_path(plan))
    return written


def write_squash_dir(ctx: Context, stage: Path) -> None:
    plan = ctx.plan
    out.copy_kernel(ctx.root, stage)
    out.write_pkglist(ctx.runner, ctx.root, stage / "filesystem.packages")
    out.write_squashfs(ctx.runner, ctx.root, stage / "filesystem.squashfs",
                       plan.settings.squash_compression)


def write_iso(ctx: Context) -> list[Path]:
    plan, s = ctx.plan, ctx.plan.settings
    written: list[Path] = []
    if s.squash:
        # The user keeps the squash directory too: build the ISO from it.
        squash_dir = Path(s.squash)
        with out.staged_dir(squash_dir) as stage:
            write_squash_dir(ctx, stage)
        written.append(squash_dir)
    else:
        squash_dir = ctx.work / "live"
        squash_dir.mkdir()
        write_squash_dir(ctx, squash_dir)
    final = Path(s.iso or "")
    iso_work = ctx.work / "iso"
    iso_work.mkdir()
    spec = iso_spec_of(plan.settings, plan.arch, plan.distribution, plan.mirror, plan.epoch)
    iso.build_iso(ctx.runner, spec, squash_dir, final, iso_work)
    try:
        # As with mksquashfs, xorriso's exit status alone is not trusted.
        iso.check_iso(ctx.runner, final, plan.arch)
    except BaseException:
        final.unlink(missing_ok=True)
        raise
    written.insert(0, final)
    return written
