"""The build, top to bottom, inside one ExitStack.

Read build() to see the order of a build.  Every resource it takes (work
dir, image file, loop device, mounts, chroot mounts, daemon block, staged
outputs) is a context manager, so a failure or Ctrl-C anywhere unwinds
them in reverse.  What the build writes appears through the output kinds
(vmdebootstrap.outputs.kinds) and the one publish step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap.errors import BuildError, MirrorError
from vmdebootstrap.host import progress
from vmdebootstrap.host.chroot import chroot_mounts, daemons_blocked, host_resolv_conf
from vmdebootstrap.host.faults import checkpoint
from vmdebootstrap.host.overlay import copy_tree, overlay, overlay_problem
from vmdebootstrap.host.progress import phase, step
from vmdebootstrap.host.publish import checksum_path
from vmdebootstrap.host.resources import temp_dir
from vmdebootstrap.host.run import CommandError, Runner
from vmdebootstrap.intent.plan import Plan
from vmdebootstrap.outputs import files, image, manifest
from vmdebootstrap.outputs.kinds import (
    KINDS,
    Job,
    apply_umask,
    chown_outputs,
    publish_beside,
    publish_pkglist,
    root_manifest,
)
from vmdebootstrap.outputs.layered import Layers
from vmdebootstrap.root import bootstrap as bs
from vmdebootstrap.root import configure as cf
from vmdebootstrap.root import reproducible
from vmdebootstrap.root.cache import MirrorRelease, cached_root, tool_version
from vmdebootstrap.root.hook import HookEnv, run_hook
from vmdebootstrap.root.hookapt import build_sources
from vmdebootstrap.root.inventory import InstalledPackage, inventory

log = logging.getLogger("vmdebootstrap")


@dataclass
class Context:
    """State discovered during a build (decisions stay in the frozen Plan)."""

    plan: Plan
    runner: Runner
    work: Path
    root: Path
    release: MirrorRelease
    # The build's own changes over a cached root, when it is shown
    # through an overlay (--layered squashes this alone).
    layer: Path | None = None
    lower: Path | None = None  # the cached root under the overlay
    # What is installed, read before apt's lists are cleaned (the SBOM
    # takes each package's pool file and checksum from them).
    packages: tuple[InstalledPackage, ...] = ()


def build(plan: Plan, runner: Runner) -> list[Path]:
    started = time.monotonic()
    release = MirrorRelease(plan.mirror, plan.distribution)
    plan, runner = reproducible.enter(plan, runner, release)
    kind = KINDS[plan.output]
    with contextlib.ExitStack() as stack:
        # Whatever the caller's umask (077 is common for root), files made
        # in the image, and in the ISO's tree, get Debian's usual modes: apt's
        # _apt user can read resolv.conf and sources, and the bytes do not
        # depend on the umask.
        umask = os.umask(0o022)
        stack.callback(os.umask, umask)
        work = stack.enter_context(
            temp_dir(runner, keep_on_failure=plan.targets.keep_on_failure))
        ctx = Context(plan, runner, work, work / "root", release)
        if kind.holds_root:
            written = build_image(ctx)
        else:
            ctx.root.mkdir()
            populate(ctx, stack)
            with step(f"Writing the {plan.output} output"), \
                    progress.reading(progress.output_progress):
                written = kind.write(Job(plan, runner, ctx.root, work, recipe_of(ctx),
                                         ctx.packages, layers_of(ctx)))
        apply_umask(written, umask)
        chown_outputs(written, plan.targets.owner)
    log.info("wrote %s", ", ".join(str(p) for p in written))
    if plan.boot_test:
        with step("Boot test"):
            boot_check(plan, written[0])
    log.log(progress.STEP, "%s", summary(written[0], time.monotonic() - started))
    return written


def summary(output: Path, seconds: float) -> str:
    """The line that ends a build: what it wrote, how big, how long."""
    if output.is_dir():
        nbytes = sum(f.stat().st_size for f in output.iterdir() if f.is_file())
    else:
        nbytes = output.stat().st_size
    return f"Built {output} ({progress.size(nbytes)}) in {progress.duration(seconds)}"


def boot_check(plan: Plan, output: Path) -> None:
    """Log in on the serial console (see plan.boot_login) and check sudo
    when that user has it."""
    from vmdebootstrap.boot.boottest import check_output

    login = plan.boot_login
    check_output(output, arch=plan.arch, user=login.user if login else None,
                 password=login.password if login else None, log=log.info,
                 status=progress.detail)


def populate(ctx: Context, held: contextlib.ExitStack) -> None:
    """Bootstrap, configure and customise the root at ctx.root; ``held``
    keeps what the outputs still read (the cached root, its overlay)."""
    plan, runner, root = ctx.plan, ctx.runner, ctx.root
    with contextlib.ExitStack() as stack:
        with step(f"Bootstrapping {plan.distribution} {plan.arch} with "
                  f"{plan.bootstrap_tool}"), progress.reading(progress.AptCounter()):
            provide_root(ctx, held)
        bs.install_handler(plan, root)
        stack.callback(bs.remove_handler, plan, root)
        checkpoint("bootstrap")

        stack.enter_context(host_resolv_conf(root))
        with step("Configuring the system"), phase("configure"):
            configure(ctx)
        hook = plan.system.hook
        if hook:
            with step(f"Running the customisation hook {hook}"), phase("hook"), \
                    progress.reading(progress.AptCounter()), build_sources(plan, runner, root):
                run_hook(runner, hook, root, str(plan.targets.path), hook_env(plan),
                         plan.system.hook_timeout)
        if cf.needs_initramfs_update(plan):
            with step("Updating the initramfs"), phase("initramfs"), \
                    chroot_mounts(runner, root), daemons_blocked(root):
                cf.update_initramfs(plan, runner, root)
        with phase("inventory"):
            ctx.packages = inventory(runner, root)
        cf.clean_apt(root)
        cf.remove_build_leftovers(root)
        cf.make_safe_to_share(root)


def provide_root(ctx: Context, held: contextlib.ExitStack) -> None:
    """The bootstrapped tree at ctx.root: a cached one (see root.cache)
    shown through an overlay, or copied into a disk image; else bootstrapped
    there."""
    plan, runner = ctx.plan, ctx.runner
    ctx.lower = tree = held.enter_context(cached_root(plan, runner, ctx.work, ctx.release))
    if tree is None:
        bs.bootstrap(plan, runner, ctx.root)
        return
    with phase("cache-use"):
        problem = "a disk image holds its own files" if KINDS[plan.output].holds_root \
            else overlay_problem(tree, ctx.work)
        if problem is None:
            try:
                ctx.layer = ctx.work / "layer"
                held.enter_context(overlay(runner, tree, ctx.layer, ctx.root))
                return
            except CommandError as exc:  # no overlayfs here, or not on these filesystems
                problem = f"no overlay: {'; '.join(exc.tail[-2:]) or exc}"
                ctx.layer = None
        log.info("copying the cached root (%s)", problem)
        copy_tree(runner, tree, ctx.root)


def layers_of(ctx: Context) -> Layers | None:
    if not ctx.plan.targets.layered:
        return None
    if ctx.lower is None or ctx.layer is None:
        raise BuildError("--layered: the cached root could not be mounted as an overlay's "
                         "lower layer (see the log); build without --layered")
    return Layers(ctx.lower, ctx.layer)


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
    """A disk image holds its root: build the root inside the attached image."""
    plan, runner = ctx.plan, ctx.runner
    with contextlib.ExitStack() as stack, image.staged_image(plan, runner) as staged, \
            image.attached(plan, runner, staged, ctx.work) as target:
        ctx.root = target.root
        populate(ctx, stack)
        with step("Installing the bootloader"):
            image.install_bootloader(plan, runner, target)
        listing = files.package_list(runner, ctx.root)
        job = Job(plan, runner, ctx.root, ctx.work, recipe_of(ctx), ctx.packages)
        recipe = root_manifest(job, ctx.root)
    # The manifest, SBOM and package list appear only once their image has.
    return [plan.targets.path, checksum_path(plan.targets.path),
            *publish_beside(job, recipe, plan.targets.path),
            *publish_pkglist(plan.targets.pkglist, listing)]


def recipe_of(ctx: Context) -> dict[str, object]:
    """The build's manifest (vmdebootstrap.outputs.manifest), from the
    finished root."""
    try:
        release = ctx.release.data()
    except MirrorError as exc:  # a local mirror without a Release file over http
        log.info("the manifest pins no mirror state: %s", exc)
        release = b""
    return manifest.recipe(ctx.plan, release=release, packages=ctx.packages,
                           tool_version=tool_version(ctx.runner, ctx.plan.bootstrap_tool))


def hook_env(plan: Plan) -> HookEnv:
    return HookEnv(arch=plan.arch, distribution=plan.distribution, mirror=plan.mirror,
                   apt_mirror=plan.apt_mirror, components=plan.components)
