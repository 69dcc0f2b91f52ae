"""The build, top to bottom, inside one ExitStack.

Read build() to see the order of a build.  Every resource it takes (work
dir, chroot mounts, daemon block, staged outputs) is a context manager on
the stack, so a failure or Ctrl-C anywhere unwinds them in reverse.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap import bootstrap as bs
from vmdebootstrap import configure as cf
from vmdebootstrap import outputs as out
from vmdebootstrap.customise import HookEnv, run_hook
from vmdebootstrap.plan import Plan
from vmdebootstrap.resources import chroot_mounts, daemons_blocked, staged_file, temp_dir
from vmdebootstrap.run import Runner

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
    with contextlib.ExitStack() as stack:
        work = stack.enter_context(temp_dir(runner, keep=s.keep_on_failure and False))
        root = work / "root"
        root.mkdir()
        ctx = Context(plan, runner, work, root)

        step(f"Bootstrapping {plan.distribution} {plan.arch} with {plan.bootstrap_tool}")
        bs.bootstrap(plan, runner, root)
        bs.install_handler(plan, root)
        stack.callback(bs.remove_handler, plan, root)

        step("Configuring the system")
        configure(ctx)

        if plan.hook:
            step(f"Running the customisation hook {plan.hook}")
            run_hook(runner, plan.hook, root, output_name(plan), hook_env(plan),
                     s.hook_timeout)
            if cf.needs_initramfs_update(plan):
                with chroot_mounts(runner, root), daemons_blocked(root):
                    cf.update_initramfs(plan, runner, root)

        cf.clean_apt(root)
        cf.make_safe_to_share(root)
        bs.remove_handler(plan, root)

        step(f"Writing the {plan.output} output")
        written = write_outputs(ctx, stack)
        out.chown_outputs(written, s.owner)
    log.info("build finished in %.0f s: %s", time.monotonic() - started,
             ", ".join(str(p) for p in written))
    return written


def configure(ctx: Context) -> None:
    plan, runner, root = ctx.plan, ctx.runner, ctx.root
    cf.set_hostname(plan, root)
    with chroot_mounts(runner, root), daemons_blocked(root):
        cf.configure_accounts(plan, runner, root)
        cf.configure_network(plan, root)
        cf.configure_serial_console(plan, root)
        cf.configure_apt(plan, root)
        if cf.needs_initramfs_update(plan) and not plan.hook:
            cf.update_initramfs(plan, runner, root)


def hook_env(plan: Plan) -> HookEnv:
    return HookEnv(arch=plan.arch, distribution=plan.distribution, mirror=plan.mirror,
                   apt_mirror=plan.apt_mirror, components=plan.components)


def output_name(plan: Plan) -> str:
    return str(out.output_paths(plan)[0])


def write_outputs(ctx: Context, stack: contextlib.ExitStack) -> list[Path]:
    plan, runner, root = ctx.plan, ctx.runner, ctx.root
    s = plan.settings
    if plan.output == "tarball":
        final = Path(s.tarball or "")
        with staged_file(final) as tmp:
            out.write_tarball(runner, root, tmp)
        written = [final]
        if s.pkglist:
            pkgs = final.with_name(final.name + ".packages")
            out.write_pkglist(runner, root, pkgs)
            written.append(pkgs)
        return written
    if plan.output == "squash":
        final = Path(s.squash or "")
        with out.staged_dir(final) as stage:
            write_squash_dir(ctx, stage)
        return [final]
    raise NotImplementedError(f"--{plan.output} output")


def write_squash_dir(ctx: Context, stage: Path) -> None:
    plan = ctx.plan
    out.copy_kernel(ctx.root, stage)
    out.write_pkglist(ctx.runner, ctx.root, stage / "filesystem.packages")
    out.write_squashfs(ctx.runner, ctx.root, stage / "filesystem.squashfs",
                       plan.settings.squash_compression)
