"""The Plan: everything a build decided before it writes a byte.

Planning (vmdebootstrap.plan) turns Settings and facts about the host into
a Plan, or refuses.  The stages of a build read the Plan, never raw
Settings: the bootloader, whether signatures are checked, the serial tty,
the output paths and the rest are resolved once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmdebootstrap.host.binfmt import ForeignSetup
from vmdebootstrap.host.passwords import UserSpec
from vmdebootstrap.intent.settings import Settings

MiB = 1024**2


@dataclass(frozen=True)
class DiskSpec:
    """What a disk image's layout depends on."""

    size: int
    arch: str = "amd64"
    bootloader: str = "grub"  # grub | extlinux | none
    use_uefi: bool = False
    esp_size: int = 128 * MiB
    bootsize: int | None = None
    boottype: str = "ext2"
    roottype: str = "ext4"
    swap: int | None = None
    bootoffset: int | None = None
    bootflag: str = "boot"
    part_type: str | None = None

    @classmethod
    def from_settings(cls, s: Any, arch: str) -> DiskSpec:
        return cls(size=s.size, arch=arch, bootloader=s.bootloader, use_uefi=s.use_uefi,
                   esp_size=s.esp_size, bootsize=s.bootsize or None, boottype=s.boottype,
                   roottype=s.roottype, swap=s.swap or None, bootoffset=s.bootoffset or None,
                   bootflag=s.bootflag, part_type=s.part_type)


@dataclass(frozen=True)
class ImageSpec:
    """A disk image: its layout and what goes on it besides the root."""

    disk: DiskSpec
    mbr: bool = False
    sparse: bool = False
    qcow2: bool = False
    kernel_append: tuple[str, ...] = ()  # after what vmdebootstrap puts on the command line
    secure_boot: bool = False  # UEFI grub through Debian's signed shim (grub-install's way)


@dataclass(frozen=True)
class IsoSpec:
    arch: str
    distribution: str
    volume_id: str = "DEBIAN_LIVE"
    menu_title: str = "Debian live"
    kernel_append: tuple[str, ...] = ()
    serial_console: bool = False
    splash: Path | None = None
    installer: bool = False
    preseed: Path | None = None
    mirror: str | None = None
    source_date_epoch: int | None = None
    serial_tty: str = "ttyS0"
    # Debian's signed shim and grub as the UEFI loaders (planning turns it
    # on where the architecture has them); they come from the mirror above,
    # for this suite and these components, checked as the bootstrap was.
    secure_boot: bool = False
    components: tuple[str, ...] = ("main",)
    keyring: Path | None = None  # None: the Debian archive keyring
    check_signatures: bool = True
    snapshot: bool = False  # the mirror is a snapshot: no Valid-Until check


@dataclass(frozen=True)
class Targets:
    """Where the build's outputs go."""

    kind: str  # image | tarball | squash | iso (vmdebootstrap.outputs.kinds)
    path: Path  # the output the user named
    squash_dir: Path | None = None  # --squash kept beside an --iso
    pkglist: Path | None = None  # --pkglist: the package list beside the output
    owner: str | None = None  # --owner
    keep_on_failure: bool = False
    compression: str = "xz"  # mksquashfs compressor[:level]
    layered: bool = False  # --layered: the cached base and this build's layer

    @property
    def paths(self) -> list[Path]:
        return [p for p in (self.path, self.squash_dir, self.pkglist) if p is not None]


@dataclass(frozen=True)
class System:
    """How the system in the root is configured."""

    hostname: str = "debian"
    users: tuple[UserSpec, ...] = field(default=(), repr=False)
    root_password_hash: str | None = field(default=None, repr=False)
    lock_root: bool = False
    sudo: bool = False
    dhcp: str | None = None  # networkd | ifupdown
    configure_apt: bool = False
    serial_tty: str | None = None  # the serial console, when there is one
    serial_getty: str | None = None  # the getty command for it
    update_initramfs: bool = True
    hook: Path | None = None
    hook_timeout: int = 10800


@dataclass(frozen=True)
class Login:
    """Who the boot test logs in as (the password is never shown)."""

    user: str
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Plan:
    settings: Settings  # kept for the record (config dumps); stages read the fields below
    output: str  # image | tarball | squash | iso
    arch: str
    distribution: str  # resolved codename
    mirror: str
    apt_mirror: str
    components: tuple[str, ...]
    variant: str | None
    bootstrap_tool: str
    bootstrap_opts: tuple[tuple[str, str | None], ...]
    packages: tuple[str, ...]
    kernel_package: str | None
    custom_debs: tuple[Path, ...]
    foreign: ForeignSetup | None
    targets: Targets
    system: System
    check_signatures: bool = True
    snapshot: bool = False  # --snapshot, or a snapshot mirror's URL
    cache_dir: Path | None = None  # None: --no-cache
    refresh_cache: bool = False
    image: ImageSpec | None = None
    iso: IsoSpec | None = None
    boot_test: bool = False
    boot_login: Login | None = field(default=None, repr=False)  # who --boot-test logs in as
    # The passwords as given (--user NAME/PASSWORD and --root-password), so
    # that a reproducible build can hash them again with salts derived from
    # its epoch.  Never written anywhere.
    user_secrets: tuple[str, ...] = field(default=(), repr=False)
    root_secret: str | None = field(default=None, repr=False)
    log_file: Path | None = None  # --log
    notes: tuple[str, ...] = ()
    reproducible: bool = False  # --reproducible: the mirror's Release date as the epoch
    epoch: int | None = None  # SOURCE_DATE_EPOCH of a reproducible build
    # The mirror a manifest names when verify fetched that same state (the
    # same Release file) from a copy of it, such as a snapshot.
    manifest_mirror: str | None = None

    @property
    def serial_tty(self) -> str:
        return self.system.serial_tty or default_serial_tty(self.arch)

    def opt(self, key: str) -> str | None:
        return dict(self.bootstrap_opts).get(key)


SERIAL_TTYS = {"arm64": "ttyAMA0", "armhf": "ttyAMA0", "armel": "ttyAMA0"}


def default_serial_tty(arch: str) -> str:
    """The first serial port's name on the architecture's usual machine."""
    return SERIAL_TTYS.get(arch, "ttyS0")
