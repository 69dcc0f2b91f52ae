"""Debian's signed boot chain, for booting the ISO with Secure Boot.

Firmware with Microsoft's keys enrolled starts only loaders they sign: the
removable-media loader (/EFI/boot/bootx64.efi on amd64, bootaa64.efi on
arm64) is Debian's shim, signed by Microsoft.  Shim starts grubx64.efi
(grubaa64.efi) from its own directory,
checked against Debian's key built into shim, and offers MokManager
(mmx64.efi) for enrolling keys of one's own.  The grub is Debian's signed
one for CDs (gcdx64.efi): monolithic, its modules built in, with an
embedded config that takes /boot/grub/grub.cfg from the medium it was
loaded from, or from the one holding /.disk/info, and otherwise the
grub.cfg beside it.  Grub then boots the kernel only if shim accepts its
signature, which Debian's kernels carry.

The packages come from the build's mirror through a private apt for the
target architecture (vmdebootstrap.host.helper_apt): signature-checked,
no chroot, nothing taken from the host.  SIGNED_BOOT is the one table of
what each architecture needs; an architecture not in it builds unsigned.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap.errors import BuildError
from vmdebootstrap.host.helper_apt import Archive, HelperApt
from vmdebootstrap.host.run import Runner
from vmdebootstrap.intent.plan import IsoSpec

log = logging.getLogger("vmdebootstrap.outputs.signed")


@dataclass(frozen=True)
class SignedBoot:
    packages: tuple[str, ...]
    # (path in the unpacked packages, name in /EFI/boot), the loader firmware
    # starts first
    files: tuple[tuple[str, str], ...]


SIGNED_BOOT: Mapping[str, SignedBoot] = {
    # shim-signed is the amd64 package (each architecture has its own of
    # that name); MokManager comes in shim-helpers-amd64-signed.
    "amd64": SignedBoot(
        packages=("shim-signed", "shim-helpers-amd64-signed", "grub-efi-amd64-signed"),
        files=(("usr/lib/shim/shimx64.efi.signed", "bootx64.efi"),
               ("usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed", "grubx64.efi"),
               ("usr/lib/shim/mmx64.efi.signed", "mmx64.efi"))),
    # The same chain for arm64 machines (servers with UEFI, SystemReady
    # boards, QEMU's virt with AAVMF): shim signed by Microsoft's UEFI CA.
    "arm64": SignedBoot(
        packages=("shim-signed", "shim-helpers-arm64-signed", "grub-efi-arm64-signed"),
        files=(("usr/lib/shim/shimaa64.efi.signed", "bootaa64.efi"),
               ("usr/lib/grub/arm64-efi-signed/gcdaa64.efi.signed", "grubaa64.efi"),
               ("usr/lib/shim/mmaa64.efi.signed", "mmaa64.efi"))),
}


def archive_of(spec: IsoSpec) -> Archive:
    assert spec.mirror, "planning gives a Secure Boot ISO a mirror"
    return Archive(mirror=spec.mirror, suite=spec.distribution, components=spec.components,
                   keyring=spec.keyring, check_signatures=spec.check_signatures,
                   snapshot=spec.snapshot)


def unsigned_reason(missing: list[str], spec: IsoSpec) -> str:
    return (f"Secure Boot: {spec.distribution} on the build's mirror has no "
            f"{', '.join(missing)} for {spec.arch}; building the ISO without Secure Boot "
            "(--no-secure-boot skips this look-up)")


def fetch_signed_boot(runner: Runner, spec: IsoSpec, scratch: Path,
                      apt: HelperApt | None = None) -> dict[str, Path] | None:
    """The signed loaders for ``spec.arch``, as name in /EFI/boot -> file
    under ``scratch``; None (after one warning) when the suite lacks them.
    ``apt``: the ISO's helper apt, when it has one already."""
    boot = SIGNED_BOOT[spec.arch]
    apt = apt or HelperApt(runner, scratch / "apt", spec.arch, archive_of(spec))
    apt.update()
    debs = scratch / "debs"
    missing = apt.download(boot.packages, debs)
    if missing:
        log.warning("%s", unsigned_reason(missing, spec))
        return None
    fetched = sorted(debs.glob("*.deb"))
    log.info("Secure Boot: the ISO boots %s", ", ".join(d.name for d in fetched))
    unpacked = scratch / "unpacked"
    apt.unpack(fetched, unpacked)
    files = {}
    for src, name in boot.files:
        path = unpacked / src
        if not path.is_file():
            raise BuildError(f"Secure Boot: {', '.join(boot.packages)} for {spec.arch} "
                             f"have no {src} (has Debian's packaging changed?)")
        files[name] = path
    return files
