"""--dry-run: the plan in words, on standard output."""

from __future__ import annotations

import shlex
from pathlib import Path

from vmdebootstrap.cli.parser import printable
from vmdebootstrap.intent.plan import Plan


def print_plan(plan: Plan) -> None:
    from vmdebootstrap.root.bootstrap import debootstrap_argv, mmdebstrap_argv

    target = Path("<workdir>/root")
    argv = (mmdebstrap_argv(plan, target) if plan.bootstrap_tool == "mmdebstrap"
            else debootstrap_argv(plan, target, False))
    lines = [
        "dry run: nothing is changed",
        f"output: --{plan.output} {', '.join(map(str, plan.targets.paths))}",
        f"distribution: {plan.distribution}   architecture: {plan.arch}",
        f"mirror: {plan.mirror}   image apt mirror: {plan.apt_mirror}",
        f"bootstrap: {shlex.join(argv)}",
        f"packages: {', '.join(plan.packages) or '(none)'}",
        f"kernel package: {plan.kernel_package or '(none)'}",
    ]
    if plan.custom_debs:
        lines.append(f"custom packages: {', '.join(map(str, plan.custom_debs))}")
    if plan.foreign:
        lines.append(f"foreign: {plan.arch} through {plan.foreign.entry.interpreter}")
    system = plan.system
    users = [u.name + (" (sudo)" if system.sudo else "") for u in system.users]
    lines.append(f"users: {', '.join(users) or '(none)'}; root: "
                 + ("locked" if system.lock_root else
                    "password set" if system.root_password_hash else "unchanged"))
    lines.append(f"hostname: {system.hostname}")
    if plan.iso is not None:
        lines.append("ISO's UEFI boot: " + (
            "Debian's signed shim and grub, if the suite has them (Secure Boot)"
            if plan.iso.secure_boot else "a GRUB image built here (no Secure Boot)"))
    if system.hook:
        lines.append(f"customisation hook: {system.hook}")
    # The plan's warnings are said here, once, and not logged as well.
    lines += [f"note: {n}" for n in plan.notes]
    # Values the user typed: a control character would reach the terminal.
    print("\n".join(printable(line) for line in lines))
