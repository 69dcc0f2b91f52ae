"""The option table: one entry per option drives the command line, config
files, --dump-config and the help text, so they can never disagree.

Names are the vmdebootstrap 1.x long option names; old scripts keep working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    STR = "str"
    BOOL = "bool"
    LIST = "list"  # repeatable on the command line, comma separated in configs
    SIZE = "size"  # bytes, with k/M/G/T or KiB/MiB/GiB/TiB suffixes
    INT = "int"
    MODE = "mode"  # an octal file mode, 0 to 0777, as chmod takes it


@dataclass(frozen=True)
class Option:
    name: str
    kind: Kind
    help: str
    default: object = None
    metavar: str | None = None
    group: str = "build"
    choices: tuple[str, ...] | None = None
    negatable: bool = True  # bool options also get --no-NAME, as in 1.x
    output: bool = False  # names an output kind (vmdebootstrap.outputs.kinds)
    # A bool option's other name for the opposite value, as 1.x had both
    # --no-update-initramfs and --update-initramfs: on the command line (the
    # later one wins) and as a config file key.
    opposite: str | None = None
    # The default in words, where it is worked out at run time (the host's
    # mirror, the current stable release...).
    default_doc: str | None = None
    # What an INT counts, for its messages: "'abc' is not a whole number of seconds".
    unit: str | None = None

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


# The option groups of --help and the README, in order.
GROUPS = {
    "output": "outputs (give exactly one of --image, --tarball, --squash, --iso)",
    "build": "root filesystem",
    "configure": "configuration of the system",
    "image": "disk images",
    "run": "running vmdebootstrap",
}

S, B, L, Z, N, M = Kind.STR, Kind.BOOL, Kind.LIST, Kind.SIZE, Kind.INT, Kind.MODE

OPTIONS: tuple[Option, ...] = (
    # outputs: exactly one kind per run (--squash may accompany --iso)
    Option("image", S, "build a bootable raw disk image in FILE", metavar="FILE", group="output",
           output=True),
    Option("tarball", S, "write the root filesystem as a tarball FILE, compressed as its "
           "suffix says (.tar.gz, .tar.xz, .tar.zst, .tar.bz2...; a plain tar otherwise)",
           metavar="FILE", group="output", output=True),
    Option("squash", S, "write filesystem.squashfs, the kernel and the initrd into DIR",
           metavar="DIR", group="output", output=True),
    Option("iso", S, "build a hybrid BIOS+UEFI live ISO in FILE", metavar="FILE", group="output",
           output=True),
    # what goes into the root filesystem
    Option("mirror", S, "mirror to bootstrap from", metavar="URL",
           default_doc="the Debian mirror in the host's apt sources"),
    Option("apt-mirror", S, "mirror the image's apt sources use (needs --configure-apt)",
           metavar="URL"),
    Option("distribution", S, "codename or suite", metavar="NAME", default_doc="current stable"),
    Option("arch", S, "Debian architecture to build", metavar="ARCH", default_doc="the host's"),
    Option("debootstrapopts", L, "bootstrap options as KEY=VALUE words, e.g. "
           "'variant=minbase components=main,contrib'", metavar="OPTS"),
    Option("bootstrap-tool", S, "tool that bootstraps the root",
           default="mmdebstrap", choices=("mmdebstrap", "debootstrap"), metavar="TOOL"),
    Option("foreign", S, "qemu-user binfmt handler for a foreign --arch", metavar="PATH",
           default_doc="the registered one"),
    Option("package", L, "install PACKAGE (repeatable)", metavar="PACKAGE"),
    Option("custom-package", L, "install the package in this .deb file (repeatable)",
           metavar="DEB"),
    Option("no-kernel", B, "install no kernel package", default=False, negatable=False),
    Option("kernel-package", S, "kernel package instead of the architecture's default",
           metavar="PACKAGE"),
    Option("no-acpid", B, "do not install acpid", default=False, negatable=False),
    Option("snapshot", B, "the mirror is a snapshot of one archive state, whose Release "
           "files are past their Valid-Until: do not check that (nothing else); on by "
           "itself for URLs like .../archive/debian/20261201T000000Z/", default=False),
    Option("no-check-gpg", B, "do NOT verify the mirror's Release signature (insecure)",
           default=False, negatable=False),
    Option("cache-dir", S, "cache of downloaded packages and bootstrapped roots, shared "
           "by builds", metavar="DIR", default_doc="/var/cache/vmdebootstrap as root, else "
           "$XDG_CACHE_HOME/vmdebootstrap, i.e. ~/.cache/vmdebootstrap"),
    Option("no-cache", B, "neither use nor fill the caches", default=False, negatable=False),
    Option("refresh-cache", B, "rebuild the root even if the cache has it, and store it anew",
           default=False, negatable=False),
    Option("reproducible", B, "bit-identical outputs for the same inputs (SOURCE_DATE_EPOCH, "
           "or the mirror's Release date when unset)", default=False),
    # configuration of the image
    Option("hostname", S, "host name of the image", default="debian", group="configure"),
    Option("root-password", S, "root password (hashed before it reaches the image); - reads "
           "it from standard input", metavar="PASSWORD", group="configure"),
    Option("lock-root-password", B, "lock the root account", default=False, group="configure"),
    Option("user", L, "create a user; NAME/ gives an empty password to be changed at first "
           "login, NAME/- reads the password from standard input", metavar="NAME/PASSWORD",
           group="configure"),
    Option("sudo", B, "install sudo and put the users in the sudo group", default=False,
           group="configure"),
    Option("enable-dhcp", B, "bring up wired interfaces with DHCP", default=False,
           group="configure"),
    Option("systemd-networkd", B, "use systemd-networkd for --enable-dhcp (else ifupdown, "
           "which needs the initramfs updated)", default=True, group="configure"),
    Option("configure-apt", B, "write the image's apt source for --apt-mirror (or --mirror)",
           default=False, group="configure"),
    Option("serial-console", B, "log in on the serial console too", default=False,
           group="configure"),
    Option("serial-console-command", S, "getty command for the serial console",
           default="/sbin/getty -L ttyS0 115200 vt100", metavar="COMMAND", group="configure"),
    Option("customize", S, "hook script run with the root directory as $1", metavar="SCRIPT",
           group="configure"),
    Option("hook-timeout", N, "seconds the hook may run", default=10800, metavar="SECONDS",
           group="configure", unit="seconds"),
    Option("no-update-initramfs", B, "do not rebuild the initramfs (--update-initramfs: "
           "rebuild it, the default)", default=False, negatable=False, group="configure",
           opposite="update-initramfs"),
    # disk images
    Option("size", Z, "size of the disk image", default="1G", group="image"),
    Option("bootsize", Z, "size of a separate /boot partition", group="image"),
    Option("boottype", S, "filesystem of /boot", default="ext2", group="image",
           choices=("ext2", "ext3", "ext4", "vfat", "btrfs", "xfs")),
    Option("bootflag", S, "partition flag set on the first partition", default="boot",
           group="image", choices=("boot", "lba", "esp", "legacy_boot")),
    Option("bootoffset", Z, "space before the first partition, for an on-disk bootloader",
           group="image"),
    Option("roottype", S, "filesystem of /", default="ext4", group="image",
           choices=("ext2", "ext3", "ext4", "btrfs", "xfs")),
    Option("swap", Z, "size of a swap partition (at least 256MiB)", group="image"),
    Option("part-type", S, "partition table type", group="image", choices=("msdos", "gpt")),
    Option("grub", B, "install grub (the default bootloader)", group="image",
           default_doc="yes, unless --extlinux"),
    Option("extlinux", B, "install extlinux instead of grub", group="image"),
    Option("mbr", B, "write an MBR boot sector (extlinux)", default=False, group="image"),
    Option("use-uefi", B, "boot with UEFI: an EFI system partition and grub-efi", default=False,
           group="image"),
    Option("esp-size", Z, "size of the EFI system partition", default="128MiB", group="image"),
    Option("sparse", B, "do not zero free space in the image", default=False, group="image"),
    Option("convert-qcow2", B, "convert the image to qcow2", default=False, group="image"),
    Option("keep-on-failure", B, "keep a failed build's image and work dir for debugging",
           default=False, group="image"),
    # squash, iso and outputs
    Option("squash-compression", S, "mksquashfs compressor, optionally with a level: xz, "
           "zstd:19, gzip, lz4, lzo", default="xz", metavar="COMP[:LEVEL]", group="output"),
    Option("layered", B, "--squash or --iso for iteration: the cached root and what "
           "configuration and the hook changed as two squashfs images that live-boot stacks, "
           "so a hook change re-squashes only the small layer (a release is one squashfs)",
           default=False, group="output"),
    Option("pkglist", B, "write the list of installed packages beside the output",
           default=False, group="output"),
    Option("owner", S, "give the outputs to this user", metavar="USER", group="output"),
    Option("iso-volume-id", S, "ISO volume id", default="DEBIAN_LIVE", group="output"),
    Option("iso-menu-title", S, "boot menu title", default="Debian live", group="output"),
    Option("kernel-append", S, "extra kernel parameters (live entries, and the image's bootloader)",
           metavar="PARAMS", group="output"),
    Option("splash", S, "PNG background for the boot menus", metavar="PNG", group="output"),
    Option("installer", B, "add Debian Installer entries to the ISO", default=False,
           group="output"),
    Option("preseed", S, "preseed file for the installer entries", metavar="FILE",
           group="output"),
    Option("secure-boot", B, "UEFI boots the ISO, or a --use-uefi image, through Debian's "
           "signed shim and grub from the mirror, so it boots with Secure Boot on (amd64 and "
           "arm64, from buster, where the suite has them; --no-secure-boot: unsigned GRUB)",
           default=True, group="output"),
    Option("boot-test", B, "boot the output in QEMU after building it (and under UEFI with "
           "Secure Boot when the ISO is signed)", default=False, group="output"),
    # running
    Option("verbose", B, "show each step on stdout", default=False, group="run"),
    Option("log", S, "write a log to FILE (created with --log-mode)", metavar="FILE", group="run"),
    Option("log-mode", M, "octal file mode of the --log file", default="0600", metavar="MODE",
           group="run"),
    Option("log-level", S, "log level", default="debug", group="run",
           choices=("debug", "info", "warning", "error", "critical", "fatal")),
    Option("dry-run", B, "validate and print the plan; change nothing", default=False,
           group="run"),
)

def shown_default(opt: Option) -> str | None:
    """The default as --help, the man page and the README show it: yes/no
    for switches, once, or None when there is nothing to say."""
    if opt.default_doc is not None:
        return opt.default_doc
    if opt.kind is Kind.BOOL:
        if opt.name.startswith("no-") and not opt.default:
            return None  # "--no-kernel (default: no)" says nothing
        return "yes" if opt.default else "no"
    if opt.default is None:
        return None
    return str(opt.default)


def describe(opt: Option) -> str:
    """An option's help text with its choices and default, once each."""
    text = opt.help
    if opt.choices:
        text += f" (one of: {', '.join(opt.choices)})"
    default = shown_default(opt)
    if default is not None:
        text += f" (default: {default})"
    return text


BY_NAME = {o.name: o for o in OPTIONS}
# The other names of bool options, meaning the opposite value.
OPPOSITES = {o.opposite: o for o in OPTIONS if o.opposite}
# The output kinds, in the order the option table lists them.
OUTPUT_KINDS: tuple[str, ...] = tuple(o.name for o in OPTIONS if o.output)

# Options that only exist on the command line, never in a config file.
META_OPTIONS = ("config", "no-default-configs", "dump-config", "list-config-files",
                "dump-setting-names", "help-all")

SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4,
}


def close_match(word: str, names: Iterable[str]) -> str | None:
    """The name ``word`` was probably meant to be (a misspelt value), if any."""
    found = difflib.get_close_matches(word, list(names), n=1, cutoff=0.7)
    return found[0] if found else None


def parse_size(text: str) -> int:
    """Parse a 1.x byte size: k/M/G/T are decimal as in 1.x, KiB/MiB/... binary."""
    import re

    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).lower() not in SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size (use e.g. 4G, 512M, 100MiB)")
    value = float(m.group(1)) * SIZE_UNITS[m.group(2).lower()]
    if value > 2**62:
        raise ValueError(f"{text!r} is too large")
    return int(value)


def parse_mode(text: str) -> int:
    """An octal file mode as chmod takes it: 0600, 644; at most 0777."""
    value = text.strip()
    if not value or any(c not in "01234567" for c in value):
        raise ValueError(f"{text!r} is not an octal file mode (use e.g. 0600 or 0644)")
    mode = int(value, 8)
    if mode > 0o777:
        raise ValueError(f"{text!r} is more than 0777 (no setuid, setgid or sticky bit)")
    return mode


def format_mode(mode: int) -> str:
    return f"0{mode:03o}"


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("yes", "true", "on", "1"):
        return True
    if value in ("no", "false", "off", "0", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean (use yes or no)")
