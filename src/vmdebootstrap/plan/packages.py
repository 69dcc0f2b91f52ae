"""What is installed: the kernel, the package list, and local .deb files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap.host import distro
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.outputs.kinds import KINDS
from vmdebootstrap.plan.disk import boot_packages
from vmdebootstrap.plan.findings import Findings
from vmdebootstrap.plan.target import Target

KERNELS = {
    "amd64": "linux-image-amd64",
    "i386": "linux-image-686-pae",
    "arm64": "linux-image-arm64",
    "armhf": "linux-image-armmp",
    "armel": "linux-image-marvell",
    "ppc64el": "linux-image-powerpc64le",
    "s390x": "linux-image-s390x",
    "riscv64": "linux-image-riscv64",
    "mips64el": "linux-image-5kc-malta",
    "mipsel": "linux-image-4kc-malta",
}
PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.:=/~-]*")
# Variants without an init system; a bootable output needs one.
MINIMAL_VARIANTS = ("minbase", "essential", "apt", "required", "buildd")


@dataclass(frozen=True)
class Packages:
    kernel: str | None
    names: tuple[str, ...]  # in install order, each once
    debs: tuple[Path, ...]  # --custom-package, resolved


def check_packages(s: Settings, target: Target, output: str, variant: str | None,
                   found: Findings) -> Packages:
    kernel = check_kernel(s, target, output, found)
    found.problems.extend(name_problems(s))
    names = [*wanted_packages(s, target, output, variant, kernel),
             *boot_packages(s, target.arch, output, target.codename)]
    return Packages(kernel=kernel, names=tuple(dict.fromkeys(names)),
                    debs=check_custom_debs(s, found))


def check_kernel(s: Settings, target: Target, output: str, found: Findings) -> str | None:
    """The kernel package, None for --no-kernel; bootable outputs need one."""
    kind = KINDS.get(output)
    if s.no_kernel:
        if s.kernel_package:
            found.notes.append(f"--no-kernel wins over --kernel-package {s.kernel_package}")
        if kind and kind.bootable and not kind.holds_root:
            found.problems.append(f"--no-kernel: a --{output} output needs a kernel to boot")
        elif kind and (kind.live or kind.holds_root):
            # As in 1.x: the hook installs its own kernel, or the root is
            # served another way.
            found.notes.append(
                f"--no-kernel: no kernel is installed; the customisation hook must provide "
                f"one for the --{output} output to boot"
                + (" (the image has no boot entry until it does)" if kind.holds_root
                   else " (without one the squash directory has no kernel files)"))
        return None
    kernel = s.kernel_package or KERNELS.get(target.arch)
    if kernel is None and target.known_arch:
        found.problems.append(f"--arch {target.arch}: no default kernel; give "
                              "--kernel-package or --no-kernel")
    return kernel


def name_problems(s: Settings) -> list[str]:
    problems = []
    if s.kernel_package and not PACKAGE_RE.fullmatch(s.kernel_package):
        problems.append(f"--kernel-package: {s.kernel_package!r} is not a package name")
    problems += [f"--package: {name!r} is not a package name"
                 for name in s.package if not PACKAGE_RE.fullmatch(name)]
    return problems


def check_custom_debs(s: Settings, found: Findings) -> tuple[Path, ...]:
    debs: list[Path] = []
    for deb in s.custom_package:
        path = Path(deb)
        if not path.is_file():
            found.problems.append(f"--custom-package: {deb} does not exist")
        elif not deb.endswith(".deb"):
            found.problems.append(f"--custom-package: {deb} is not a .deb file")
        else:
            debs.append(path.resolve())
    return tuple(debs)


def wanted_packages(s: Settings, target: Target, output: str, variant: str | None,
                    kernel: str | None) -> list[str]:
    """The packages the options ask for, in order, without duplicates."""
    kind = KINDS.get(output)
    wanted: list[str] = [kernel] if kernel else []
    if kind and kind.live:
        wanted.append("live-boot")
    if variant in MINIMAL_VARIANTS and kind and (kind.live or kind.bootable):
        wanted.append("systemd-sysv")  # minimal variants have no init to boot
    if s.sudo:
        wanted.append("sudo")
    if not s.no_acpid and target.native:  # acpid fails to configure under qemu-user
        wanted.append("acpid")
    if s.enable_dhcp:
        if not s.systemd_networkd:
            wanted += ["ifupdown", "isc-dhcp-client"]
        elif target.codename and not distro.is_older_than(target.codename, "bookworm"):
            wanted.append("systemd-resolved")
    wanted += s.package
    return list(dict.fromkeys(wanted))
