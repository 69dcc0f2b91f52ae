"""Live ISO images: the architectures, the volume id, the splash, the
installer entries, Secure Boot, and the host tools xorriso and grub need."""

from __future__ import annotations

import re
from pathlib import Path

from vmdebootstrap.host.apt_sources import is_snapshot_url
from vmdebootstrap.intent.plan import IsoSpec
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.outputs import iso
from vmdebootstrap.outputs.signed import SIGNED_BOOT
from vmdebootstrap.plan.findings import Findings
from vmdebootstrap.plan.system import serial_tty_of
from vmdebootstrap.plan.target import Target

ISO_ARCHES = ("amd64", "i386", "arm64")
ISO_ONLY = ("installer", "splash", "preseed")


def check_iso(s: Settings, target: Target, mirror: str, output: str,
              found: Findings) -> None:
    if output == "none":
        return  # no output (or several): only that is said
    if output != "iso":
        found.problems.extend(f"--{name} only applies to --iso"
                              for name in ISO_ONLY if getattr(s, name))
        return
    found.problems.extend(option_problems(s, target.arch))
    if s.secure_boot and target.arch in ISO_ARCHES and target.arch not in SIGNED_BOOT:
        found.notes.append(f"--iso for {target.arch}: no Secure Boot (vmdebootstrap uses "
                           f"Debian's signed boot loaders for {', '.join(SIGNED_BOOT)} only); "
                           "the ISO boots without it")
    if target.arch in ISO_ARCHES and target.codename:
        spec = iso_spec_of(s, target.arch, target.codename, mirror)
        found.problems.extend(spec_problems(spec))
        if not s.dry_run:
            found.problems.extend(f"--iso needs {m} installed"
                                  for m in iso.missing_requirements(spec))


def option_problems(s: Settings, arch: str) -> list[str]:
    problems = []
    if arch not in ISO_ARCHES:
        problems.append(f"--iso: not supported for {arch} (supported: "
                        f"{', '.join(ISO_ARCHES)})")
    if not re.fullmatch(r"[A-Z0-9_]{1,32}", s.iso_volume_id):
        problems.append(f"--iso-volume-id: {s.iso_volume_id!r}: use 1 to 32 of A-Z, 0-9, _")
    for name in ("splash", "preseed"):
        value = getattr(s, name)
        if value and not Path(value).is_file():
            problems.append(f"--{name}: {value} does not exist")
        elif value:
            problems.extend(content_problems(name, Path(value)))
    if s.preseed and not s.installer:
        problems.append("--preseed requires --installer")
    return problems


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A preseed file is read whole into the installer's initrd.
PRESEED_MAX = 1024**2


def content_problems(name: str, path: Path) -> list[str]:
    """What a --splash that is no PNG, or a --preseed that is no text,
    would do to the boot menus or the installer, said before the build."""
    with path.open("rb") as f:
        data = f.read(8 if name == "splash" else PRESEED_MAX + 1)
    if name == "splash":
        if data != PNG_SIGNATURE:
            return [f"--splash: {path} is not a PNG image (it does not start with PNG's "
                    "signature); the boot menus show only PNG: convert it, e.g. with "
                    "'convert IMAGE splash.png'"]
        return []
    if len(data) > PRESEED_MAX:
        return [f"--preseed: {path} is over 1 MiB: a preseed file is a short text of "
                "debconf answers"]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:
        return [f"--preseed: {path} is not a text file (a preseed file is debconf answers, "
                "one 'd-i question type value' line each, in UTF-8)"]
    return []


def spec_problems(spec: IsoSpec) -> list[str]:
    """The ISO writer's own checks, but for those option_problems made."""
    return [f"--iso: {p}" for p in iso.validate_spec(spec) if not _said_above(p)]


def _said_above(problem: str) -> bool:
    """Whether validate_spec's problem is one option_problems words its own way."""
    return (problem.startswith(("ISO volume id ", "a preseed file needs "))
            or (problem.startswith(("--splash file ", "--preseed file "))
                and problem.endswith((" does not exist", " is not a PNG image"))))


def iso_spec_of(s: Settings, arch: str, codename: str, mirror: str,
                epoch: int | None = None, *, components: tuple[str, ...] = ("main",),
                keyring: str | None = None, check_signatures: bool = True) -> IsoSpec:
    """Secure Boot where the architecture has Debian's signed loaders; whether
    the suite has them the build finds out (and says so if it has not).  They
    come from the bootstrap's mirror, suite and components, checked with its
    keyring, or not at all as its signatures are not with --no-check-gpg."""
    return IsoSpec(
        arch=arch, distribution=codename, volume_id=s.iso_volume_id,
        menu_title=s.iso_menu_title, kernel_append=s.kernel_params,
        serial_console=s.serial_console, splash=Path(s.splash) if s.splash else None,
        installer=s.installer, preseed=Path(s.preseed) if s.preseed else None,
        mirror=mirror, source_date_epoch=epoch,
        serial_tty=serial_tty_of(s, arch),
        secure_boot=s.secure_boot and arch in SIGNED_BOOT, components=components,
        keyring=Path(keyring) if keyring else None, check_signatures=check_signatures,
        snapshot=s.snapshot or is_snapshot_url(mirror),
    )


def iso_of(s: Settings, target: Target, mirror: str, output: str, *,
           components: tuple[str, ...] = ("main",), keyring: str | None = None,
           check_signatures: bool = True) -> IsoSpec | None:
    if output != "iso":
        return None
    return iso_spec_of(s, target.arch, target.codename, mirror, components=components,
                       keyring=keyring, check_signatures=check_signatures)
