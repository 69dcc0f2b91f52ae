"""--boot-test: which outputs can be booted, who logs in, and whether this
host has the QEMU emulator and firmware to boot them."""

from __future__ import annotations

from vmdebootstrap.boot.guests import UEFI_SB_FIRMWARE, missing_boot_tools
from vmdebootstrap.intent.plan import Login
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.outputs.kinds import KINDS
from vmdebootstrap.outputs.signed import SIGNED_BOOT
from vmdebootstrap.plan.disk import image_secure_boot
from vmdebootstrap.plan.findings import Findings
from vmdebootstrap.plan.target import Target


def check_boot_test(s: Settings, output: str, found: Findings, *,
                    target: Target | None = None) -> None:
    """With the ``target`` (arch and suite), whether this host has what QEMU
    needs to boot the output."""
    if not s.boot_test:
        return
    kind = KINDS.get(output)
    if output != "none" and not (kind and kind.bootable):  # "none": no output is said
        found.problems.append("--boot-test needs a bootable output: --iso or --image")
    if not s.serial_console:
        found.problems.append("--boot-test logs in on the serial console: add --serial-console")
    if boot_login_of(s) is None:
        found.problems.append(_no_login(s))
    if target is not None and target.known_arch and kind and kind.bootable:
        firmwares = boot_firmwares(output, target.arch, s.use_uefi,
                                   boots_signed(s, target, output))
        _check_tools(s, target.arch, firmwares, found)


def boots_signed(s: Settings, target: Target, output: str) -> bool:
    """Whether the output's UEFI boot goes through Debian's signed shim."""
    if output == "iso":
        return s.secure_boot and target.arch in SIGNED_BOOT
    return output == "image" and image_secure_boot(s, target.arch, target.codename)


def _no_login(s: Settings) -> str:
    why = ""
    if s.user:
        why = (" (a user given as NAME/ has an empty password, to be chosen at the first "
               "login, which the boot test cannot do)")
    elif s.lock_root_password:
        why = " (--lock-root-password locks root)"
    return ("--boot-test logs in to check the system, and nothing can log in to this one"
            f"{why}: add --user NAME/PASSWORD (with --sudo) or --root-password PASSWORD")


def boot_firmwares(output: str, arch: str, use_uefi: bool, secure_boot: bool) -> list[str]:
    """The firmwares the boot test boots the output under, as it will find
    them in the written output (boot.media.default_firmwares)."""
    secure = ["uefi-sb"] if secure_boot and arch in UEFI_SB_FIRMWARE else []
    if arch == "arm64":
        return ["uefi", *secure]
    if output == "iso":
        return ["bios", "uefi", *secure]
    return ["uefi", *secure] if use_uefi else ["bios"]


def _check_tools(s: Settings, arch: str, firmwares: list[str], found: Findings) -> None:
    """What cannot be booted at all is a problem; what the host lacks to
    boot it is one too, but only a note in a dry run (which, as for the
    other host tools, may be checking options on another machine)."""
    everything = missing_boot_tools(arch, firmwares, which=lambda name: name,
                                    exists=lambda path: True)
    found.problems.extend(f"--boot-test: {p}" for p in everything)
    if everything:
        return
    missing = [f"--boot-test: {p}" for p in missing_boot_tools(arch, firmwares)]
    if s.dry_run:
        found.notes.extend(f"{p} (a real build refuses to start without it)" for p in missing)
    else:
        found.problems.extend(missing)


def boot_login_of(s: Settings) -> Login | None:
    """The first user with a password, else root with its password."""
    for value in s.user:
        name, _, password = value.partition("/")
        if password:
            return Login(name, password)
    if s.root_password:
        return Login("root", s.root_password)
    return None
