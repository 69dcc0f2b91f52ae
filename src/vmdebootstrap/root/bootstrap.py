"""Bootstrap the root filesystem with mmdebstrap or debootstrap.

mmdebstrap installs the kernel and every package in the same apt run as
the base system; debootstrap installs the base, then apt installs the rest.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from pathlib import Path

from vmdebootstrap.host.chroot import chroot_argv, chroot_env, chroot_mounts, daemons_blocked
from vmdebootstrap.host.progress import phase
from vmdebootstrap.host.run import CommandError, Runner
from vmdebootstrap.intent.plan import Plan
from vmdebootstrap.root import initramfs

log = logging.getLogger("vmdebootstrap")

APT_QUIET = ["-q", "-y", "-o", "Dpkg::Use-Pty=0", "-o", "APT::Color=0"]


def mmdebstrap_argv(plan: Plan, target: Path, extra: Sequence[str] = ()) -> list[str]:
    argv = [
        # --verbose: apt's and dpkg's lines, which the progress display counts
        "mmdebstrap", "--mode=root", "--verbose", f"--architectures={plan.arch}",
        f"--variant={plan.variant or 'debootstrap'}",
        f"--components={','.join(plan.components)}",
    ]
    includes = list(plan.packages)
    user_includes = plan.opt("include")
    if user_includes:
        includes += [p for p in user_includes.split(",") if p]
    if includes:
        argv.append(f"--include={','.join(dict.fromkeys(includes))}")
    argv += [f"--include={deb}" for deb in plan.custom_debs]
    keyring = plan.opt("keyring")
    if keyring:
        argv.append(f"--keyring={keyring}")
    if plan.snapshot:
        argv.append("--aptopt=Acquire::Check-Valid-Until false")
    if not plan.check_signatures:
        argv += ["--aptopt=Acquire::AllowInsecureRepositories true",
                 "--aptopt=APT::Get::AllowUnauthenticated true"]
    if plan.foreign and not plan.foreign.entry.fix_binary:
        # Without binfmt's F flag the kernel looks the emulator up inside the
        # chroot, so it has to be there before the first package script runs.
        dest = Path(plan.foreign.copy_to)
        q = shlex.quote
        argv.append(f'--setup-hook=mkdir -p "$1"{q(str(dest.parent))} && '
                    f'cp -p {q(str(plan.foreign.handler))} "$1"{q(str(dest))}')
    # The package lists stay (cleaned from the root at the end of the
    # build, vmdebootstrap.root.configure.clean_apt): the hook's apt-get
    # update then finds them current instead of downloading them again.
    argv += ["--aptopt=Acquire::Retries 3", "--dpkgopt=force-unsafe-io",
             "--skip=cleanup/apt/lists", initramfs.hold_hook(), *extra]
    argv += [plan.distribution, str(target), plan.mirror]
    return argv


def debootstrap_argv(plan: Plan, target: Path, foreign_stage: bool) -> list[str]:
    argv = ["debootstrap", f"--arch={plan.arch}"]
    for key, value in plan.bootstrap_opts:
        argv.append(f"--{key}" if value is None else f"--{key}={value}")
    if not plan.check_signatures and "no-check-gpg" not in dict(plan.bootstrap_opts):
        argv.append("--no-check-gpg")
    if foreign_stage:
        argv.append("--foreign")
    argv += [plan.distribution, str(target), plan.mirror]
    return argv


def apt_install_argv(packages: list[str]) -> list[str]:
    return ["apt-get", *APT_QUIET, "--no-install-recommends", "install", *packages]


def bootstrap(plan: Plan, runner: Runner, root: Path, extra: Sequence[str] = ()) -> None:
    """``extra``: more mmdebstrap options (the package cache's hooks).
    Logs the phases bootstrap and initramfs (made once, after apt: see
    root.initramfs)."""
    with phase("bootstrap"):
        if plan.bootstrap_tool == "mmdebstrap":
            runner.run(mmdebstrap_argv(plan, root, extra), label="mmdebstrap",
                       what="bootstrapping with mmdebstrap failed")
        else:
            _debootstrap(plan, runner, root)
    if plan.bootstrap_tool == "mmdebstrap":
        with phase("initramfs"):
            initramfs.make_initramfs(plan, runner, root)
    drop_host_copies(root)


# Both tools copy these from the host so that apt can resolve names in the
# root; left there they would ship the build host's name server in the image.
HOST_COPIES = ("etc/resolv.conf",)


def drop_host_copies(root: Path, host: Path = Path("/")) -> None:
    """Remove the host's files the bootstrap tool copied in (a package's own
    version, or a symbolic link such as systemd-resolved's, stays)."""
    for rel in HOST_COPIES:
        copy, original = root / rel, host / rel
        if copy.is_symlink() or not copy.is_file() or not original.is_file():
            continue
        if copy.read_bytes() == original.read_bytes():
            copy.unlink()
            log.debug("removed the build host's /%s from the root", rel)


def _debootstrap(plan: Plan, runner: Runner, root: Path) -> None:
    two_stage = bool(plan.foreign and not plan.foreign.entry.fix_binary)
    try:
        runner.run(debootstrap_argv(plan, root, two_stage), label="debootstrap",
                   what="debootstrap failed")
        if two_stage:
            assert plan.foreign is not None
            install_handler(plan, root)
            runner.run(chroot_argv(root, ["/debootstrap/debootstrap", "--second-stage"]),
                       env=chroot_env(),
                       label="debootstrap", what="debootstrap's second stage failed")
    except CommandError as exc:
        _show_debootstrap_log(root, exc)
        raise
    debs = [f"/tmp/{d.name}" for d in plan.custom_debs]
    if not plan.packages and not debs:
        return
    for deb in plan.custom_debs:
        (root / "tmp" / deb.name).write_bytes(deb.read_bytes())
    with chroot_mounts(runner, root), daemons_blocked(root):
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        runner.run(chroot_argv(root, ["apt-get", *APT_QUIET, "update"]), env=chroot_env(env),
                   label="apt", what="apt-get update in the root failed")
        runner.run(chroot_argv(root, apt_install_argv([*plan.packages, *debs])),
                   env=chroot_env(env),
                   label="apt", what="installing packages failed")
    for deb in plan.custom_debs:
        (root / "tmp" / deb.name).unlink(missing_ok=True)


def install_handler(plan: Plan, root: Path) -> Path | None:
    """Copy the qemu-user handler into the root when binfmt needs it there."""
    if not plan.foreign or plan.foreign.entry.fix_binary:
        return None
    dest = root / plan.foreign.copy_to.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(plan.foreign.handler.read_bytes())
    dest.chmod(0o755)
    return dest


def remove_handler(plan: Plan, root: Path) -> None:
    if plan.foreign and not plan.foreign.entry.fix_binary:
        (root / plan.foreign.copy_to.lstrip("/")).unlink(missing_ok=True)


def _show_debootstrap_log(root: Path, exc: CommandError) -> None:
    logfile = root / "debootstrap" / "debootstrap.log"
    if logfile.exists():
        tail = logfile.read_text(errors="replace").splitlines()[-20:]
        exc.tail = tail
        log.error("tail of debootstrap.log:\n%s", "\n".join(tail))
