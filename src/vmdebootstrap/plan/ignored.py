"""Options the chosen output ignores.  1.x scripts and shared config files
pass them (a disk size to a tarball build, say), so they are not refused;
each is named in a warning, so nobody expects it to have done something.

Only options the user gave (Settings.given), with a value other than the
default, are named; options some checker already refuses are left to it
(--convert-qcow2, --splash, --installer and --preseed outside their output).
"""

from __future__ import annotations

from vmdebootstrap.intent.settings import Settings, given_values
from vmdebootstrap.plan.findings import Findings

# What only a disk image uses (--convert-qcow2: refused elsewhere, plan.disk).
IMAGE_ONLY = ("size", "bootsize", "boottype", "bootflag", "bootoffset", "roottype", "swap",
              "part-type", "grub", "extlinux", "mbr", "use-uefi", "esp-size", "sparse")
# What only an ISO uses (--splash, --installer, --preseed: refused elsewhere, plan.iso).
ISO_ONLY = ("iso-volume-id", "iso-menu-title")
# What only a bootable output uses: the ISO's menus and the image's bootloader.
BOOT_ONLY = ("kernel-append",)


def check_ignored(s: Settings, output: str, found: Findings) -> None:
    """Warn about the options ``output`` has no use for."""
    if output == "none":
        return  # no output (or several): only that is said
    if output != "image":
        _warn(found, given_values(s, IMAGE_ONLY), f"--{output}", "--image")
    if output != "iso":
        _warn(found, given_values(s, ISO_ONLY), f"--{output}", "--iso")
    if output in ("tarball", "image"):
        _warn(found, given_values(s, ("layered",)), f"--{output}", "--squash and --iso")
    if output in ("tarball", "squash"):
        _warn(found, given_values(s, BOOT_ONLY), f"--{output}", "--iso and --image")
        _warn(found, _secure_boot(s), f"--{output}", "--iso and --use-uefi images")
    elif output == "image" and not s.use_uefi:
        _warn(found, given_values(s, ("esp-size",)) + _secure_boot(s),
              "an --image without --use-uefi", "UEFI images")


def _secure_boot(s: Settings) -> list[str]:
    """--secure-boot, if given: typed on the command line even as its
    default (yes), in a config file only as --no-secure-boot (a dumped
    config has every key, and says nothing by secure-boot = yes)."""
    typed = s.given.get("secure-boot") == "command line"
    return ["--secure-boot"] if typed or given_values(s, ("secure-boot",)) else []


def _warn(found: Findings, options: list[str], output: str, used_by: str) -> None:
    if not options:
        return
    names = options[0] if len(options) == 1 else \
        f"{', '.join(options[:-1])} and {options[-1]}"
    verb, pronoun = ("is", "it applies") if len(options) == 1 else ("are", "they apply")
    found.notes.append(f"{names} {verb} ignored for {output} ({pronoun} to {used_by} only)")
