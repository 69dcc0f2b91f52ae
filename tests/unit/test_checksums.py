"""The ISO's checksums: the boot menu entry that has live-boot verify the
medium."""

from __future__ import annotations

from vmdebootstrap.outputs import isomenu

# --- the menu entry ----------------------------------------------------------------------


def test_verify_entry_follows_fail_safe_and_live_stays_default() -> None:
    entries = isomenu.menu_entries(arch="amd64", installer_dir="install.amd")
    assert [e.ident for e in entries] == ["live", "failsafe", "verify", "install"]
    verify = entries[2]
    assert verify.title == "Live system (verify the medium)"
    assert (verify.kernel, verify.initrd) == ("/live/vmlinuz", "/live/initrd.img")
    assert verify.append == ("boot=live", "components", "verify-checksums")
    assert not verify.default and entries[0].default


def test_verify_entry_keeps_console_and_kernel_append() -> None:
    verify = isomenu.menu_entries(arch="arm64", serial_console=True, serial_tty="ttyAMA0",
                                  kernel_append=("live-config.hostname=x",))[2]
    assert verify.append == ("boot=live", "components", "verify-checksums", "console=tty0",
                             "console=ttyAMA0,115200n8", "live-config.hostname=x")


def test_verify_entry_in_both_menus() -> None:
    entries = isomenu.menu_entries(arch="amd64")
    isolinux = isomenu.isolinux_cfg(entries, title="T", serial_console=False, splash=False)
    assert ("LABEL verify\n  MENU LABEL Live system (verify the medium)\n"
            "  LINUX /live/vmlinuz\n  INITRD /live/initrd.img\n"
            "  APPEND boot=live components verify-checksums\n") in isolinux
    assert isolinux.index("LABEL failsafe") < isolinux.index("LABEL verify")
    assert "DEFAULT live\n" in isolinux
    grub = isomenu.grub_cfg(entries, title="T", serial_console=False, splash=False, font=False)
    assert ("menuentry 'Live system (verify the medium)' --id verify {\n"
            "  linux /live/vmlinuz boot=live components verify-checksums\n"
            "  initrd /live/initrd.img\n}") in grub
    assert grub.index("--id failsafe") < grub.index("--id verify")
    assert "set default=0\n" in grub
