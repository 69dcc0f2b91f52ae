"""The command line of vmdebootstrap-boottest: its options, grouped, each
with its choices and default said once in its help text (as the main
command's option table does with intent.options.describe)."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

from vmdebootstrap import __version__
from vmdebootstrap.boot.guests import FIRMWARES, GUESTS
from vmdebootstrap.errors import VmdebootstrapError
from vmdebootstrap.host.binfmt import host_arch

PROG = "vmdebootstrap-boottest"
MEDIA = ("iso", "raw", "qcow2")
ACCELS = ("auto", "kvm", "tcg")
FIRMWARE_CHOICES = (*FIRMWARES, "both", "all")


def default_arch() -> str | None:
    try:
        return host_arch()
    except VmdebootstrapError:
        return None  # main reports it, unless --arch is given


def describe(text: str, *, choices: Sequence[str] = (), default: object = None) -> str:
    """``text`` with its choices and its default, once each."""
    if choices:
        text += f" (one of: {', '.join(choices)})"
    if default is not None:
        text += f" (default: {default})"
    return text


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type: ``kind`` of the value, which must be above 0."""
    def parse(value: str) -> float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if number <= 0:
            raise argparse.ArgumentTypeError(f"{value!r} is not above 0")
        return number
    return parse


def _what_to_boot(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to boot")
    arch = default_arch()
    g.add_argument("--arch", default=arch, choices=list(GUESTS), metavar="ARCH", help=describe(
        "the architecture FILE is built for; QEMU emulates it", choices=list(GUESTS),
        # Not the value: the man page is made from this on the build host.
        default="this machine's"))
    g.add_argument("--media", choices=MEDIA, metavar="MEDIA", help=describe(
        "boot FILE as a CD (iso) or as a disk (raw or qcow2); it must agree with "
        "FILE's contents", choices=MEDIA,
        default="from the contents, and for a hybrid ISO from the name: .iso is a CD"))
    g.add_argument("--firmware", choices=FIRMWARE_CHOICES, metavar="FIRMWARE", help=describe(
        "bios: SeaBIOS; uefi: OVMF (AAVMF on arm); uefi-sb: UEFI enforcing Secure Boot "
        "with Microsoft's keys, and the guest must report it enabled; both: bios and "
        "uefi; all: bios, uefi and uefi-sb", choices=FIRMWARE_CHOICES,
        default="what FILE is made for: bios and uefi for an ISO, plus uefi-sb when its "
        "UEFI loader is signed; for a disk what its partitions suggest"))


def _what_to_do(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to prove")
    g.add_argument("--user", metavar="NAME/PASSWORD", help=describe(
        "log in as NAME and run --command; 'NAME/' is an empty password, 'NAME/-' reads "
        "it from stdin", default="no login: reaching the login prompt is the test"))
    g.add_argument("--command", help=describe(
        "run this after logging in; the shell variable $PASSWORD holds the password",
        default="cat /etc/debian_version, and for a user other than root a check "
        "that sudo gives root"))
    g.add_argument("--installer", action="store_true", help=describe(
        "instead of logging in, start the ISO's Install entry (--installer builds) from "
        "the boot menu and wait for d-i's first question", default="no"))


def _how_to_run(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("QEMU")
    g.add_argument("--accel", choices=ACCELS, default="auto", metavar="ACCEL", help=describe(
        "kvm: hardware virtualisation; tcg: software emulation; auto: KVM only when a "
        "short probe boot shows that it really runs a guest", choices=ACCELS,
        default="auto"))
    g.add_argument("--timeout", type=_positive(float), default=600.0, metavar="SECONDS",
                   help=describe("give up on a boot after this long", default=600))
    g.add_argument("--memory", type=_positive(int), default=1024, metavar="MIB",
                   help=describe("the guest's memory in MiB", default=1024))


class _Formatter(argparse.HelpFormatter):
    """Wraps help text between words only: "uefi-sb" stays whole."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=_Formatter,
        description="Boot an ISO, a disk image or a qcow2 in QEMU, log in on the serial "
                    "console and run a command; exit 0 only if all of that worked.",
        epilog="Exit status: 0 every boot passed, 1 a boot failed, 2 FILE or the options "
               "cannot be booted (nothing was started), 128+N stopped by signal N.")
    p.add_argument("file", metavar="FILE", type=Path,
                   help="an ISO, a raw disk image with a partition table, or a qcow2")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}",
                   help="print the version and exit")
    p.add_argument("-v", "--verbose", action="store_true", help=describe(
        "stream the serial console to stderr", default="no"))
    _what_to_boot(p)
    _what_to_do(p)
    _how_to_run(p)
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)
