"""Turn Settings plus facts about the host into a Plan, or refuse.

Every option is checked here, before anything is written; all problems are
reported together, each naming the option and what to do instead.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from vmdebootstrap.errors import UsageError
from vmdebootstrap.host import apt_sources, binfmt, distro
from vmdebootstrap.host.passwords import UserSpec, hash_password, parse_user
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.outputs import iso
from vmdebootstrap.outputs.bootloaders import bootloader_packages
from vmdebootstrap.outputs.partitions import DiskSpec, layout_problems
from vmdebootstrap.root.hook import find_hook

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
UEFI_ARCHES = ("amd64", "i386", "arm64", "armhf")
ISO_ARCHES = ("amd64", "i386", "arm64")
TARBALL_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.zst", ".tar.bz2")
COMPRESSORS = ("xz", "zstd", "gzip", "lz4", "lzo", "lzma")
# mksquashfs -Xcompression-level ranges; the other compressors take no level.
COMPRESSION_LEVELS = {"gzip": (1, 9), "lzo": (1, 9), "zstd": (1, 22)}
PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.:=/~-]*")
# debootstrap option words accepted in --debootstrapopts; the value says
# whether the word takes =VALUE.
DEBOOTSTRAP_OPTS = {
    "variant": True, "components": True, "include": True, "exclude": True,
    "keyring": True, "no-check-gpg": False, "merged-usr": False, "no-merged-usr": False,
    "extractor": True, "no-resolve-deps": False, "verbose": False, "print-debs": False,
}
MMDEBSTRAP_VARIANTS = {"minbase", "buildd", "essential", "apt", "required", "important",
                       "standard", "custom", "extract"}
HOSTNAME_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
URL_RE = re.compile(r"(https?|file)://[^\s\x00-\x1f\x7f]+")
MIN_SWAP = 256 * 1024**2
MiB = 1024**2


@dataclass(frozen=True)
class Host:
    """Facts about the build host; injected so unit tests need no root."""

    arch: str = field(default_factory=binfmt.host_arch)
    etc_apt: Path = Path("/etc/apt")
    binfmt_dir: Path = Path("/proc/sys/fs/binfmt_misc")
    today: date | None = None
    cwd: Path = field(default_factory=Path.cwd)
    user_exists: Callable[[str], bool] = lambda name: _user_exists(name)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass(frozen=True)
class Plan:
    settings: Settings
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
    users: tuple[UserSpec, ...] = field(repr=False)
    root_password_hash: str | None = field(repr=False)
    hook: Path | None
    foreign: binfmt.ForeignSetup | None
    notes: tuple[str, ...] = ()
    epoch: int | None = None  # SOURCE_DATE_EPOCH of a reproducible build

    @property
    def bootable(self) -> bool:
        return self.output in ("image", "squash", "iso")

    @property
    def serial_tty(self) -> str:
        if self.settings.serial_console_command:
            m = re.search(r"\btty\w+", self.settings.serial_console_command)
            if m and not (self.arch == "arm64" and m.group(0) == "ttyS0"):
                return m.group(0)
        return "ttyAMA0" if self.arch == "arm64" else "ttyS0"

    def opt(self, key: str) -> str | None:
        return dict(self.bootstrap_opts).get(key)


def parse_debootstrapopts(words: tuple[str, ...]) -> tuple[list[tuple[str, str | None]],
                                                             list[str]]:
    opts: list[tuple[str, str | None]] = []
    problems: list[str] = []
    for word in words:
        key, eq, value = word.lstrip("-").partition("=")
        if key not in DEBOOTSTRAP_OPTS:
            problems.append(f"--debootstrapopts: unknown option '{key}' (known: "
                            f"{', '.join(sorted(DEBOOTSTRAP_OPTS))})")
        elif DEBOOTSTRAP_OPTS[key] and not (eq and value):
            problems.append(f"--debootstrapopts: '{key}' needs a value, as in {key}=VALUE")
        elif not DEBOOTSTRAP_OPTS[key] and eq:
            problems.append(f"--debootstrapopts: '{key}' takes no value")
        else:
            opts.append((key, value if eq else None))
    return opts, problems


def _writable_parent(option: str, path: str, problems: list[str]) -> None:
    parent = Path(path).resolve().parent
    if option == "squash":
        # The squash directory's parents are created, as 1.x did.
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if not parent.is_dir():
        problems.append(f"--{option}: directory {parent} does not exist; create it first")
    elif not os.access(parent, os.W_OK):
        problems.append(f"--{option}: directory {parent} is not writable")


def make_plan(s: Settings, host: Host | None = None) -> Plan:
    host = host or Host()
    problems: list[str] = []
    notes: list[str] = []

    # --- outputs -----------------------------------------------------------
    outputs = s.outputs
    if "--iso" in outputs and "--squash" in outputs:
        outputs = [o for o in outputs if o != "--squash"]
    if not outputs:
        problems.append("no output given: use one of --image, --tarball, --squash or --iso")
    elif len(outputs) > 1:
        problems.append(f"only one output per run: {' and '.join(outputs)} were given together")
    output = outputs[0].lstrip("-") if len(outputs) == 1 else "none"
    for name in ("image", "tarball", "squash", "iso", "log"):
        value = getattr(s, name)
        if value is not None:
            if not value.strip():
                problems.append(f"--{name}: empty path")
                continue
            _writable_parent(name, value, problems)
    if s.tarball and not s.tarball.endswith(TARBALL_SUFFIXES):
        problems.append(f"--tarball: {s.tarball!r} should end in one of "
                        f"{', '.join(TARBALL_SUFFIXES)}")
    if s.squash and Path(s.squash).exists() and not Path(s.squash).is_dir():
        problems.append(f"--squash: {s.squash} exists and is not a directory")
    if s.image and Path(s.image).exists() and not Path(s.image).is_file():
        problems.append(f"--image: {s.image} exists and is not a regular file; "
                        "vmdebootstrap only writes image files")

    # --- architecture and distribution --------------------------------------
    arch = s.arch or host.arch
    if arch not in binfmt.VALID_ARCHES:
        problems.append(f"--arch: unknown architecture {arch!r} (known: "
                        f"{', '.join(sorted(binfmt.VALID_ARCHES))})")
    codename = ""
    try:
        codename = distro.resolve(s.distribution or "stable", host.today)
    except UsageError as exc:
        problems.extend(exc.problems)
    foreign = None
    if arch in binfmt.VALID_ARCHES:
        try:
            foreign = binfmt.check_foreign(arch, host.arch, s.foreign, host.binfmt_dir)
        except UsageError as exc:
            problems.extend(exc.problems)
        if foreign is None and s.foreign:
            notes.append(f"--foreign is ignored: {arch} runs natively on this {host.arch} host")

    # --- mirrors ------------------------------------------------------------
    mirror = s.mirror or ""
    if not mirror:
        try:
            mirror = apt_sources.default_mirror(host.etc_apt)
        except UsageError as exc:
            problems.extend(exc.problems)
    for name, url in (("mirror", s.mirror), ("apt-mirror", s.apt_mirror)):
        if url is not None and not URL_RE.fullmatch(url):
            problems.append(f"--{name}: {url!r} is not an http://, https:// or file:// URL")
    if s.apt_mirror and not s.configure_apt:
        problems.append("--apt-mirror requires --configure-apt")

    # --- bootstrap options ----------------------------------------------------
    bopts, bproblems = parse_debootstrapopts(s.debootstrapopts)
    problems.extend(bproblems)
    opts = dict(bopts)
    variant = opts.get("variant")
    components = tuple((opts.get("components") or "main").split(","))
    if "keyring" in opts and not Path(str(opts["keyring"])).is_file():
        problems.append(f"--debootstrapopts: keyring {opts['keyring']} does not exist")
    tool = s.bootstrap_tool
    if tool == "mmdebstrap":
        why = _mmdebstrap_cannot(opts)
        if why:
            notes.append(f"using debootstrap instead of mmdebstrap: {why}")
            tool = "debootstrap"
    missing = [t for t in (tool,) if shutil.which(t) is None]
    if missing and not s.dry_run:
        problems.append(f"--bootstrap-tool: {tool} is not installed "
                        f"(apt-get install {tool})")
    if s.no_check_gpg or "no-check-gpg" in opts:
        notes.append("WARNING: the mirror's Release signature will NOT be verified")

    # --- packages -----------------------------------------------------------
    kernel = None
    if not s.no_kernel:
        kernel = s.kernel_package or KERNELS.get(arch)
        if kernel is None and arch in binfmt.VALID_ARCHES:
            problems.append(f"--arch {arch}: no default kernel; give --kernel-package "
                            "or --no-kernel")
    elif s.kernel_package:
        notes.append(f"--no-kernel wins over --kernel-package {s.kernel_package}")
    if s.no_kernel and (output in ("squash", "iso") or
                        (output == "image" and s.bootloader != "none")):
        # An image without a bootloader may get both from its hook (u-boot boards).
        problems.append(f"--no-kernel: a --{output} output needs a kernel to boot"
                        + (" (or give --no-grub --no-extlinux)" if output == "image" else ""))
    emulated = arch not in binfmt.native_arches(host.arch)
    packages = _packages(s, codename, output, variant, kernel, emulated)
    if output == "image" and not (s.use_uefi and arch not in UEFI_ARCHES):
        packages += [p for p in bootloader_packages(
            arch, s.bootloader, s.use_uefi, s.roottype, s.boottype if s.bootsize else None)
            if p not in packages]
    if s.kernel_package and not PACKAGE_RE.fullmatch(s.kernel_package):
        problems.append(f"--kernel-package: {s.kernel_package!r} is not a package name")
    for name in s.package:
        if not PACKAGE_RE.fullmatch(name):
            problems.append(f"--package: {name!r} is not a package name")
    debs: list[Path] = []
    for deb in s.custom_package:
        path = Path(deb)
        if not path.is_file():
            problems.append(f"--custom-package: {deb} does not exist")
        elif not deb.endswith(".deb"):
            problems.append(f"--custom-package: {deb} is not a .deb file")
        else:
            debs.append(path.resolve())

    # --- configuration --------------------------------------------------------
    if not HOSTNAME_RE.fullmatch(s.hostname):
        problems.append(f"--hostname: {s.hostname!r} is not a valid host name "
                        "(letters, digits and '-', dot-separated labels)")
    if s.root_password is not None and s.lock_root_password:
        problems.append("--root-password and --lock-root-password contradict each other: "
                        "give one")
    users: list[UserSpec] = []
    for value in s.user:
        try:
            users.append(parse_user(value))
        except UsageError as exc:
            problems.extend(exc.problems)
    if len({u.name for u in users}) != len(users):
        problems.append("--user: the same user is given twice")
    if s.sudo and not users:
        notes.append("--sudo without --user: sudo is installed, nobody is added to it")
    if not s.systemd_networkd and s.no_update_initramfs:
        problems.append("--no-systemd-networkd requires updating the initramfs, so it cannot "
                        "be combined with --no-update-initramfs")
    hook = None
    if s.customize:
        try:
            hook = find_hook(s.customize, [Path(c).resolve().parent for c in s.config_files],
                             host.cwd)
        except UsageError as exc:
            problems.extend(exc.problems)
    if not s.no_cache:
        problems.extend(_cache_dir_problems(s.cache_dir))
    if s.owner and not host.user_exists(s.owner):
        problems.append(f"--owner: no user {s.owner!r} on this host")
    problems.extend(_compression_problems(s.squash_compression))

    # --- disk images and boot ------------------------------------------------
    image_problems = _image_problems(s, arch, codename, output, variant)
    problems.extend(image_problems)
    if output == "image" and arch in binfmt.VALID_ARCHES and not image_problems:
        problems.extend(layout_problems(DiskSpec.from_settings(s, arch)))
    if output == "iso":
        if arch not in ISO_ARCHES:
            problems.append(f"--iso: not supported for {arch} (supported: "
                            f"{', '.join(ISO_ARCHES)})")
        if not re.fullmatch(r"[A-Z0-9_]{1,32}", s.iso_volume_id):
            problems.append(f"--iso-volume-id: {s.iso_volume_id!r}: use 1 to 32 of A-Z, 0-9, _")
        for name in ("splash", "preseed"):
            value = getattr(s, name)
            if value and not Path(value).is_file():
                problems.append(f"--{name}: {value} does not exist")
        if s.preseed and not s.installer:
            problems.append("--preseed requires --installer")
    else:
        for name in ("installer", "splash", "preseed"):
            if getattr(s, name):
                problems.append(f"--{name} only applies to --iso")

    if output == "iso" and arch in ISO_ARCHES and codename:
        spec = iso_spec_of(s, arch, codename, mirror)
        checked_above = ("volume", "splash", "preseed")
        problems.extend(f"--iso: {p}" for p in iso.validate_spec(spec)
                        if not any(word in p.lower() for word in checked_above))
        if not s.dry_run:
            problems.extend(f"--iso needs {m} installed" for m in iso.missing_requirements(spec))
    if s.boot_test:
        if output not in ("iso", "image"):
            problems.append("--boot-test needs a bootable output: --iso or --image")
        if not s.serial_console:
            problems.append("--boot-test logs in on the serial console: add --serial-console")
    if problems:
        raise UsageError(problems)

    root_hash = hash_password(s.root_password) if s.root_password is not None else None
    return Plan(
        settings=s, output=output, arch=arch, distribution=codename, mirror=mirror,
        apt_mirror=s.apt_mirror or mirror, components=components, variant=variant,
        bootstrap_tool=tool, bootstrap_opts=tuple(bopts), packages=tuple(packages),
        kernel_package=kernel, custom_debs=tuple(debs), users=tuple(users),
        root_password_hash=root_hash, hook=hook, foreign=foreign, notes=tuple(notes),
    )


def _compression_problems(value: str) -> list[str]:
    comp, colon, level = value.partition(":")
    where = f"--squash-compression: {value!r}"
    if comp not in COMPRESSORS:
        return [f"{where}: use one of {', '.join(COMPRESSORS)}, optionally with :LEVEL"]
    if not colon:
        return []
    limits = COMPRESSION_LEVELS.get(comp)
    if limits is None:
        return [f"{where}: {comp} takes no level (levels: "
                + ", ".join(f"{c} {lo}-{hi}" for c, (lo, hi) in COMPRESSION_LEVELS.items())
                + ")"]
    lo, hi = limits
    if not (level.isascii() and level.isdigit() and lo <= int(level) <= hi):
        return [f"{where}: the {comp} level must be a number from {lo} to {hi}"]
    return []


def _mmdebstrap_cannot(opts: dict[str, str | None]) -> str | None:
    if "exclude" in opts:
        return "it has no --exclude"
    for key in ("extractor", "no-resolve-deps", "merged-usr", "no-merged-usr"):
        if key in opts:
            return f"it has no equivalent of debootstrap's --{key}"
    variant = opts.get("variant")
    if variant and variant not in MMDEBSTRAP_VARIANTS:
        return f"variant {variant} is debootstrap's only"
    return None


def _packages(s: Settings, codename: str, output: str, variant: str | None,
              kernel: str | None, emulated: bool) -> list[str]:
    wanted: list[str] = []
    if kernel:
        wanted.append(kernel)
    if output in ("squash", "iso"):
        wanted.append("live-boot")
    if variant in ("minbase", "essential", "apt", "required", "buildd") and output in (
            "squash", "iso", "image"):
        wanted.append("systemd-sysv")  # minimal variants have no init to boot
    if s.sudo:
        wanted.append("sudo")
    if not s.no_acpid and not emulated:  # acpid fails to configure under qemu-user
        wanted.append("acpid")
    if s.enable_dhcp:
        if s.systemd_networkd:
            if codename and not distro.is_older_than(codename, "bookworm"):
                wanted.append("systemd-resolved")
        else:
            wanted += ["ifupdown", "isc-dhcp-client"]
    wanted += s.package
    return list(dict.fromkeys(wanted))


def _image_problems(s: Settings, arch: str, codename: str, output: str,
                    variant: str | None) -> list[str]:
    problems: list[str] = []
    wheezy = codename == "wheezy"
    if s.use_uefi:
        if arch not in UEFI_ARCHES:
            problems.append(f"--use-uefi: no UEFI grub for {arch} (UEFI is supported on "
                            f"{', '.join(UEFI_ARCHES)})")
        if s.bootloader != "grub":
            problems.append("--use-uefi needs --grub (not --extlinux or --no-grub)")
        if s.bootoffset:
            problems.append("--bootoffset cannot be combined with --use-uefi")
        if wheezy and arch != "amd64":
            problems.append(f"--use-uefi: wheezy supports UEFI only on amd64, not {arch}")
    if output == "image":
        if arch == "arm64" and not s.use_uefi:
            problems.append("--image for arm64 needs --use-uefi (arm64 boots with UEFI)")
        if wheezy and s.roottype == "ext4":
            problems.append("--roottype ext4: wheezy images using ext4 will not boot; "
                            "use --roottype ext3")
        if s.bootloader == "extlinux" and s.roottype == "btrfs":
            problems.append("--roottype btrfs cannot be used with --extlinux")
        if s.swap is not None and s.swap < MIN_SWAP:
            problems.append("--swap: at least 256MiB")
        # A rough floor (bookworm: ~250 MB minbase, ~400 MB default, ~300 MB for
        # a kernel); a build that still fills the image says so clearly.
        need = (250 if variant == "minbase" else 400) * MiB
        if not s.no_kernel:
            need += 300 * MiB
        extra = (s.bootsize or 0) + (s.swap or 0) + (s.bootoffset or 0)
        extra += s.esp_size if s.use_uefi else 0
        if s.size < need + extra:
            total = need + extra
            problems.append(
                f"--size: {s.size} bytes is too small; this build needs at least "
                f"{-(-total // MiB)} MiB (e.g. --size {-(-total // 10**9)}G)")
    else:
        if s.convert_qcow2:
            problems.append("--convert-qcow2 only applies to --image")
    return problems


def _cache_dir_problems(cache_dir: str) -> list[str]:
    path = Path(cache_dir)
    if not path.is_absolute():
        return [f"--cache-dir: {cache_dir!r} must be an absolute path"]
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return [f"--cache-dir: {existing} is not a directory"]
    if not os.access(existing, os.W_OK):
        return [f"--cache-dir: {existing} is not writable (or use --no-cache)"]
    return []


def iso_spec_of(s: Settings, arch: str, codename: str, mirror: str,
                epoch: int | None = None) -> iso.IsoSpec:
    return iso.IsoSpec(
        arch=arch, distribution=codename, volume_id=s.iso_volume_id,
        menu_title=s.iso_menu_title, kernel_append=tuple((s.kernel_append or "").split()),
        serial_console=s.serial_console, splash=Path(s.splash) if s.splash else None,
        installer=s.installer, preseed=Path(s.preseed) if s.preseed else None,
        mirror=mirror, source_date_epoch=epoch,
    )
