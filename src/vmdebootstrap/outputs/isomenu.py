"""Boot menu and small config files for the live ISO.

One list of menu entries is rendered twice: as an isolinux config (BIOS) and
as a GRUB config (UEFI).  Everything here is pure text generation so it can be
unit tested without any tools.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

LIVE_APPEND = ("boot=live", "components")
QUIET = ("quiet", "splash")
# live-build's fail-safe options.
FAILSAFE_APPEND = (
    "boot=live", "components", "memtest", "noapic", "noapm", "nodma", "nomce",
    "nolapic", "nosmp", "nosplash", "vga=788",
)
SERIAL_SPEED = "115200n8"
# live-boot checks the medium against /sha256sum.txt, then reboots (or
# stops with the failures on tty8): no quiet or splash, so that its
# "Verifying checksums" and the result are on the screen.
VERIFY_APPEND = ("boot=live", "components", "verify-checksums")

# Debian Installer directory names on install media, by Debian arch.
INSTALLER_DIRS = {"amd64": "install.amd", "i386": "install.386", "arm64": "install.a64"}

_PARAM_RE = re.compile(r"[^\s\"'\\$;{}`]+")


@dataclass(frozen=True)
class MenuEntry:
    ident: str          # isolinux LABEL / grub --id
    title: str
    kernel: str         # path on the ISO, absolute
    initrd: str
    append: tuple[str, ...]
    default: bool = False
    hotkey: str | None = None  # one letter of the title: pressed in the menu, boots the entry

    def isolinux_label(self) -> str:
        """The title with menu.c32's ^ before the hotkey's letter."""
        if not self.hotkey:
            return self.title
        at = self.title.lower().index(self.hotkey)
        return f"{self.title[:at]}^{self.title[at:]}"


def validate_kernel_param(param: str) -> str | None:
    """Return a problem message if ``param`` cannot go on a boot menu line."""
    if not _PARAM_RE.fullmatch(param):
        return (f"kernel parameter {param!r} must be one word without spaces, quotes, "
                "backslashes, '$', ';', '{', '}' or backticks")
    return None


def validate_menu_title(title: str) -> str | None:
    if not title or len(title) > 60 or not title.isprintable() or any(c in title for c in "\"\\$`"):
        return (f"menu title {title!r} must be 1-60 printable characters without "
                "quotes, backslashes, '$' or backticks")
    return None


def console_params(serial_console: bool, tty: str = "ttyS0") -> tuple[str, ...]:
    return ("console=tty0", f"console={tty},{SERIAL_SPEED}") if serial_console else ()


def live_append(kernel_append: Sequence[str], serial_console: bool,
                tty: str = "ttyS0") -> tuple[str, ...]:
    quiet = () if serial_console else QUIET
    return (*LIVE_APPEND, *quiet, *console_params(serial_console, tty), *kernel_append)


def failsafe_append(kernel_append: Sequence[str], serial_console: bool,
                    tty: str = "ttyS0") -> tuple[str, ...]:
    return (*FAILSAFE_APPEND, *console_params(serial_console, tty), *kernel_append)


def verify_append(kernel_append: Sequence[str], serial_console: bool,
                  tty: str = "ttyS0") -> tuple[str, ...]:
    return (*VERIFY_APPEND, *console_params(serial_console, tty), *kernel_append)


def installer_append(serial_console: bool, tty: str = "ttyS0") -> tuple[str, ...]:
    # No preseed parameter: a preseed travels inside the initrd, where d-i
    # finds /preseed.cfg by itself.  Nor auto=true/priority=critical: d-i
    # asks what the preseed leaves open, as it does by default.
    params: list[str] = ["vga=788"]
    if serial_console:
        # d-i wants a single console; the last one wins.
        params.append(f"console={tty},{SERIAL_SPEED}")
    return (*params, "---", "quiet")


def menu_entries(*, arch: str, kernel_append: Sequence[str] = (), serial_console: bool = False,
                 installer_dir: str | None = None, installer_gtk: bool = False,
                 serial_tty: str = "ttyS0") -> list[MenuEntry]:
    """The live entries (the live system, fail-safe, verifying the medium),
    and with ``installer_dir`` d-i's; its graphical entry only with
    ``installer_gtk`` (a d-i package may have none)."""
    tty = serial_tty
    entries = [
        MenuEntry("live", f"Live system ({arch})", "/live/vmlinuz", "/live/initrd.img",
                  live_append(kernel_append, serial_console, tty), default=True),
        MenuEntry("failsafe", f"Live system ({arch} fail-safe mode)", "/live/vmlinuz",
                  "/live/initrd.img", failsafe_append(kernel_append, serial_console, tty)),
        MenuEntry("verify", "Live system (verify the medium)", "/live/vmlinuz",
                  "/live/initrd.img", verify_append(kernel_append, serial_console, tty)),
    ]
    if installer_dir:
        args = installer_append(serial_console, tty)
        d = f"/{installer_dir}"
        # Debian's own ISOs give the installer entries these hotkeys.
        entries.append(MenuEntry("install", "Install", f"{d}/vmlinuz", f"{d}/initrd.gz", args,
                                 hotkey="i"))
        if installer_gtk:
            entries.append(MenuEntry("installgui", "Graphical install", f"{d}/gtk/vmlinuz",
                                     f"{d}/gtk/initrd.gz", args, hotkey="g"))
    return entries


def isolinux_cfg(entries: Sequence[MenuEntry], *, title: str, serial_console: bool,
                 splash: bool, timeout_s: int = 5) -> str:
    lines: list[str] = []
    if serial_console:
        lines.append("SERIAL 0 115200")
    lines += [
        f"UI {'vesamenu.c32' if splash else 'menu.c32'}",
        "PROMPT 0",
        f"TIMEOUT {timeout_s * 10}",
        f"DEFAULT {next((e.ident for e in entries if e.default), entries[0].ident)}",
        f"MENU TITLE {title}",
    ]
    if splash:
        lines.append("MENU BACKGROUND splash.png")
    for e in entries:
        lines += ["", f"LABEL {e.ident}", f"  MENU LABEL {e.isolinux_label()}"]
        if e.hotkey:
            lines.append("  MENU IMMEDIATE")  # the hotkey boots it, as in grub, not only selects
        if e.default:
            lines.append("  MENU DEFAULT")
        lines += [f"  LINUX {e.kernel}", f"  INITRD {e.initrd}", f"  APPEND {' '.join(e.append)}"]
    return "\n".join(lines) + "\n"


def _grub_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def grub_cfg(entries: Sequence[MenuEntry], *, title: str, serial_console: bool,
             splash: bool, font: bool, timeout_s: int = 5) -> str:
    default = next((i for i, e in enumerate(entries) if e.default), 0)
    lines = [
        f"# {title}",
        f"set default={default}",
        f"set timeout={timeout_s}",
        "insmod all_video",
    ]
    outputs = ["console"]
    if splash and font:
        lines += [
            "if loadfont /boot/grub/fonts/unicode.pf2; then",
            "  insmod gfxterm",
            "  insmod png",
            "  set gfxmode=auto",
            "  terminal_output gfxterm",
            "  background_image /boot/grub/splash.png",
            "fi",
        ]
        outputs = ["gfxterm"]
    if serial_console:
        lines += [
            "serial --unit=0 --speed=115200",
            "terminal_input console serial",
            f"terminal_output {' '.join([*outputs, 'serial'])}",
        ]
    for e in entries:
        lines += [
            "",
            f"menuentry {_grub_quote(e.title)} --id {e.ident}"
            f"{f' --hotkey={e.hotkey}' if e.hotkey else ''} {{",
            f"  linux {e.kernel} {' '.join(e.append)}",
            f"  initrd {e.initrd}",
            "}",
        ]
    return "\n".join(lines) + "\n"


def efi_search_cfg(marker: str) -> str:
    """The tiny config next to the EFI binary: find the ISO by its marker file
    (works booted as a CD and from the ESP of the ISO written to a disk)."""
    return (
        f"search --no-floppy --set=root --file {marker}\n"
        "set prefix=($root)/boot/grub\n"
        "configfile ($root)/boot/grub/grub.cfg\n"
    )


def disk_info(distribution: str, arch: str, date: str) -> str:
    # No trailing newline, as on Debian media.
    return f"Debian GNU/Linux {distribution} {arch} live {date}"
