"""Settings: the user's intent, frozen.  Built from the option table's
defaults, then config files, then the command line (which wins)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vmdebootstrap.errors import UsageError
from vmdebootstrap.intent.options import (
    BY_NAME,
    OPTIONS,
    OUTPUT_KINDS,
    Kind,
    close_match,
    parse_bool,
    parse_mode,
    parse_size,
)


@dataclass(frozen=True)
class Settings:
    # outputs
    image: str | None = None
    tarball: str | None = None
    squash: str | None = None
    iso: str | None = None
    # root filesystem
    mirror: str | None = None
    apt_mirror: str | None = None
    distribution: str | None = None
    arch: str | None = None
    debootstrapopts: tuple[str, ...] = ()
    bootstrap_tool: str = "mmdebstrap"
    foreign: str | None = None
    package: tuple[str, ...] = ()
    custom_package: tuple[str, ...] = ()
    no_kernel: bool = False
    kernel_package: str | None = None
    no_acpid: bool = False
    snapshot: bool = False
    no_check_gpg: bool = False
    cache_dir: str | None = None  # None: the host's default (plan.facts.Host)
    no_cache: bool = False
    refresh_cache: bool = False
    reproducible: bool = False
    # configuration
    hostname: str = "debian"
    root_password: str | None = field(default=None, repr=False)
    lock_root_password: bool = False
    user: tuple[str, ...] = field(default=(), repr=False)
    sudo: bool = False
    enable_dhcp: bool = False
    systemd_networkd: bool = True
    configure_apt: bool = False
    serial_console: bool = False
    serial_console_command: str = "/sbin/getty -L ttyS0 115200 vt100"
    customize: str | None = None
    hook_timeout: int = 10800
    no_update_initramfs: bool = False
    # disk images
    size: int = 1_000_000_000
    bootsize: int | None = None
    boottype: str = "ext2"
    bootflag: str = "boot"
    bootoffset: int | None = None
    roottype: str = "ext4"
    swap: int | None = None
    part_type: str | None = None
    grub: bool | None = None
    extlinux: bool | None = None
    mbr: bool = False
    use_uefi: bool = False
    esp_size: int = 128 * 1024**2
    sparse: bool = False
    convert_qcow2: bool = False
    keep_on_failure: bool = False
    # outputs
    squash_compression: str = "xz"
    layered: bool = False
    pkglist: bool = False
    owner: str | None = None
    iso_volume_id: str = "DEBIAN_LIVE"
    iso_menu_title: str = "Debian live"
    kernel_append: str | None = None
    splash: str | None = None
    installer: bool = False
    preseed: str | None = None
    secure_boot: bool = True
    boot_test: bool = False
    # running
    verbose: bool = False
    log: str | None = None
    log_mode: int = 0o600
    log_level: str = "debug"
    dry_run: bool = False
    # where settings came from; hooks are also searched beside config files
    config_files: tuple[str, ...] = ()
    # The options the user gave, as option name -> where ("command line" or
    # a config file): planning warns about those the output ignores, never
    # about defaults.  Not part of what the settings are (equality, hash).
    given: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def outputs(self) -> list[str]:
        """The output options given, as their option names."""
        return [f"--{n}" for n in OUTPUT_KINDS if getattr(self, n)]

    @property
    def kernel_params(self) -> tuple[str, ...]:
        """--kernel-append, as the words that go on a kernel command line."""
        return tuple((self.kernel_append or "").split())

    @property
    def bootloader(self) -> str:
        """grub is the default; extlinux on request; none if both refused."""
        if self.extlinux:
            return "extlinux"
        if self.grub is False or (self.extlinux is False and self.grub is None):
            return "none"
        return "grub"

    def with_values(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


SECRET_OPTIONS = ("root-password", "user")

_FIELDS = {f.name for f in dataclasses.fields(Settings)}
assert all(o.dest in _FIELDS for o in OPTIONS), "option table and Settings disagree"


def given_values(s: Settings, names: Sequence[str]) -> list[str]:
    """Of ``names``, the options the user gave with a value other than
    the default, as --NAME."""
    default = Settings()
    return [f"--{n}" for n in names if n in s.given
            and getattr(s, BY_NAME[n].dest) != getattr(default, BY_NAME[n].dest)]


def _check_text(value: str) -> None:
    # One value per line in config files and error messages; no C string ends.
    if "\n" in value or "\0" in value:
        raise ValueError("the value contains a newline or NUL byte")


def _whole_number(text: str, unit: str | None) -> int:
    """A positive whole number, in ASCII digits (int() also takes '1_000'
    and other scripts' digits, which no one means here)."""
    of = f" of {unit}" if unit else ""
    if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", text):
        raise ValueError(f"{text!r} is not a whole number{of}")
    value = int(text)
    if value <= 0:
        raise ValueError(f"{text!r} must be a positive number{of} (at least 1)")
    return value


def convert(name: str, raw: object, source: str) -> tuple[object, str | None]:
    """Convert one raw value (a string from a config file, or what argparse
    produced) to the option's type.  Returns (value, problem)."""
    opt = BY_NAME[name]
    where = f"--{name}" if source == "command line" else f"'{name}' in {source}"
    try:
        if opt.kind is Kind.BOOL:
            value: object = raw if isinstance(raw, bool) else parse_bool(str(raw))
        elif opt.kind is Kind.LIST:
            if isinstance(raw, str):
                items = [x.strip() for x in raw.split(",")] if name != "debootstrapopts" \
                    else raw.split()
                listed = tuple(x for x in items if x)
            elif name == "debootstrapopts":
                # 1.x took one quoted string of words: 'variant=minbase components=main'
                listed = tuple(w for x in raw for w in str(x).split())  # type: ignore[attr-defined]
            else:
                listed = tuple(str(x) for x in raw)  # type: ignore[attr-defined]
            for item in listed:
                _check_text(item)
            value = listed
        elif opt.kind is Kind.SIZE:
            if str(raw).strip().startswith("-"):
                raise ValueError(f"{raw!r} is negative: give a size such as 4G, 512M, 100MiB")
            value = parse_size(str(raw))
        elif opt.kind is Kind.MODE:
            value = parse_mode(str(raw))
        elif opt.kind is Kind.INT:
            value = _whole_number(str(raw), opt.unit)
        else:
            value = str(raw)
            _check_text(value)
            if opt.choices and value not in opt.choices:
                close = close_match(value, opt.choices)
                raise ValueError(f"{value!r} is not one of: {', '.join(opt.choices)}"
                                 + (f"; did you mean {close}?" if close else ""))
    except ValueError as exc:
        if name in SECRET_OPTIONS:
            return None, f"{where}: invalid value"  # never echo a secret back
        return None, f"{where}: {exc}"
    return value, None


def build_settings(layers: Sequence[tuple[str, Mapping[str, object]]],
                   problems: list[str] | None = None) -> Settings:
    """Merge layers (lowest priority first) of raw values into Settings.

    List options accumulate across config files, but the command line
    replaces them, as a config file is a default the user overrides.
    Values that do not convert raise UsageError, or, when a ``problems``
    list is given, are reported there and left at their defaults so that
    the plan's checks can report everything else in the same run."""
    collect = problems is not None
    values: dict[str, object] = {}
    given: dict[str, str] = {}
    problems = problems if problems is not None else []
    for source, raw_values in layers:
        for name, raw in raw_values.items():
            if name == "config-files":
                continue
            value, problem = convert(name, raw, source)
            if problem:
                problems.append(problem)
                continue
            values[BY_NAME[name].dest] = value
            given[name] = source
    if problems and not collect:
        raise UsageError(problems)
    for _source, raw_values in layers:
        if "config-files" in raw_values:
            files = raw_values["config-files"]
            assert isinstance(files, tuple)
            values["config_files"] = files
    defaults: dict[str, object] = {}
    for opt in OPTIONS:
        if opt.default is not None and opt.kind is Kind.SIZE:
            defaults[opt.dest] = parse_size(str(opt.default))
        elif opt.default is not None and opt.kind is Kind.MODE:
            defaults[opt.dest] = parse_mode(str(opt.default))
    defaults.update(values)
    return Settings(**defaults, given=given)  # type: ignore[arg-type]
