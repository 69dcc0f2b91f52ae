"""Planning's refusals and warnings through the command line: options the
output ignores (warned once), an ESP too small, --mbr without extlinux, ISO
files that are no PNG or no text, and a --boot-test nobody can log in to."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.conftest import CliResult
from tests.unit.test_refusals import errors
from vmdebootstrap import cli
from vmdebootstrap.plan import Plan

RunCli = Callable[..., CliResult]


# --- what an output cannot use ---------------------------------------------------------------


def notes(result: CliResult) -> list[str]:
    assert result.code == 0, result.err
    return [line.removeprefix("note: ") for line in result.out.splitlines()
            if line.startswith("note: ")]


def test_image_options_ignored_by_other_outputs(run_cli: RunCli, out: Path) -> None:
    image_options = ("--size", "4G", "--roottype", "xfs", "--grub", "--sparse", "--mbr",
                     "--use-uefi", "--esp-size", "1M", "--part-type", "gpt")
    assert notes(run_cli("--dry-run", "--tarball", "r.tar", *image_options)) == [
        "--size, --roottype, --part-type, --grub, --mbr, --use-uefi, --esp-size and "
        "--sparse are ignored for --tarball (they apply to --image only)"]
    assert notes(run_cli("--dry-run", "--iso", str(out / "l.iso"), "--swap", "1G")) == [
        "--swap is ignored for --iso (it applies to --image only)"]


def test_iso_and_boot_options_ignored_by_other_outputs(run_cli: RunCli, out: Path) -> None:
    argv = ("--iso-volume-id", "LIVE", "--iso-menu-title", "Live", "--kernel-append", "quiet")
    assert notes(run_cli("--dry-run", "--squash", str(out / "sq"), *argv)) == [
        "--iso-volume-id and --iso-menu-title are ignored for --squash (they apply to --iso "
        "only)",
        "--kernel-append is ignored for --squash (it applies to --iso and --image only)"]
    assert notes(run_cli("--dry-run", "--image", str(out / "d.img"), "--size", "3G",
                         *argv)) == [
        "--iso-volume-id and --iso-menu-title are ignored for --image (they apply to --iso "
        "only)"]


def test_defaults_given_draw_no_warning(run_cli: RunCli, tmp_path: Path) -> None:
    """1.x scripts and config files pass defaults; saying so is noise."""
    assert notes(run_cli("--dry-run", "--tarball", "r.tar", "--size", "1G", "--roottype",
                         "ext4", "--iso-volume-id", "DEBIAN_LIVE", "--no-sparse")) == []
    conf = tmp_path / "dumped.conf"
    conf.write_text(run_cli("--dump-config", "--sudo").out)
    assert "secure-boot = yes" in conf.read_text()
    assert notes(run_cli("--dry-run", "--tarball", "r.tar", "--config", str(conf))) == [
        "--sudo without --user: sudo is installed, nobody is added to it"]


def test_secure_boot_named_for_a_tarball(run_cli: RunCli, tmp_path: Path) -> None:
    said = "--secure-boot is ignored for --tarball (it applies to --iso and --use-uefi images " \
        "only)"
    assert notes(run_cli("--dry-run", "--tarball", "r.tar")) == []
    assert notes(run_cli("--dry-run", "--tarball", "r.tar", "--secure-boot")) == [said]
    assert notes(run_cli("--dry-run", "--tarball", "r.tar", "--no-secure-boot")) == [said]
    conf = tmp_path / "vm.conf"
    conf.write_text("[config]\nsecure-boot = no\n")
    assert notes(run_cli("--dry-run", "--tarball", "r.tar", "--config", str(conf))) == [said]


def test_uefi_options_of_an_image_without_uefi(run_cli: RunCli, out: Path) -> None:
    assert notes(run_cli("--dry-run", "--image", str(out / "d.img"), "--size", "3G",
                         "--esp-size", "200M", "--secure-boot")) == [
        "--esp-size and --secure-boot are ignored for an --image without --use-uefi (they "
        "apply to UEFI images only)"]


def test_an_esp_too_small(run_cli: RunCli, out: Path) -> None:
    assert errors(run_cli("--dry-run", "--image", str(out / "d.img"), "--size", "3G",
                          "--use-uefi", "--esp-size", "1M")) == [
        "--esp-size: 1000000 bytes is too small for the EFI system partition: at least "
        "32MiB, as FAT32 (what UEFI firmware reads) starts there, and it holds shim and grub; "
        "e.g. --esp-size 128MiB"]
    assert notes(run_cli("--dry-run", "--image", str(out / "d.img"), "--size", "3G",
                         "--use-uefi", "--esp-size", "32MiB")) == []


def test_mbr_needs_extlinux(run_cli: RunCli, out: Path) -> None:
    image = ("--dry-run", "--image", str(out / "d.img"), "--size", "3G")
    assert errors(run_cli(*image, "--mbr")) == [
        "--mbr writes extlinux's MBR boot code, but this image boots with grub (the default "
        "bootloader; 1.x's was extlinux), which writes its own: add --extlinux, or leave out "
        "--mbr"]
    assert notes(run_cli(*image, "--mbr", "--extlinux")) == []
    # 1.x scripts passed --grub --mbr (grub then wrote its own boot code): kept working.
    assert notes(run_cli(*image, "--mbr", "--grub")) == [
        "--mbr is ignored with --grub: grub writes its own boot code (--mbr writes "
        "extlinux's)"]


def test_warnings_are_said_once_in_a_real_run(run_cli: RunCli,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from vmdebootstrap import build as build_module

    built: list[Plan] = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(build_module, "build", lambda plan, runner: built.append(plan))
    monkeypatch.setattr(cli, "_install_signal_handlers", lambda: None)
    result = run_cli("--tarball", "r.tar", "--size", "4G")
    assert result.code == 0, result.err
    said = "--size is ignored for --tarball (it applies to --image only)"
    assert (result.out + result.err).count(said) == 1
    assert said in result.err  # a warning
    assert built


def test_a_dry_run_says_each_warning_once(run_cli: RunCli) -> None:
    result = run_cli("--dry-run", "--verbose", "--tarball", "r.tar", "--size", "4G")
    said = "--size is ignored for --tarball (it applies to --image only)"
    assert (result.out + result.err).count(said) == 1


# --- ISO files ----------------------------------------------------------------------------------


PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def test_a_splash_that_is_not_a_png(run_cli: RunCli, out: Path) -> None:
    splash = out / "splash.png"
    splash.write_bytes(b"GIF89a" + b"\0" * 32)
    assert errors(run_cli("--dry-run", "--iso", str(out / "l.iso"), "--splash",
                          str(splash))) == [
        f"--splash: {splash} is not a PNG image (it does not start with PNG's signature); "
        "the boot menus show only PNG: convert it, e.g. with 'convert IMAGE splash.png'"]
    splash.write_bytes(PNG)
    assert run_cli("--dry-run", "--iso", str(out / "l.iso"), "--splash", str(splash)).code == 0


@pytest.mark.parametrize("content", [b"\x7fELF\x02\x01\x01\0\0\0", "d-i é\n".encode("latin-1"),
                                     b"d-i x\0y\n"])
def test_a_preseed_that_is_not_text(run_cli: RunCli, out: Path, content: bytes) -> None:
    preseed = out / "preseed.cfg"
    preseed.write_bytes(content)
    assert errors(run_cli("--dry-run", "--iso", str(out / "l.iso"), "--installer",
                          "--preseed", str(preseed))) == [
        f"--preseed: {preseed} is not a text file (a preseed file is debconf answers, one "
        "'d-i question type value' line each, in UTF-8)"]


def test_a_text_preseed(run_cli: RunCli, out: Path) -> None:
    preseed = out / "preseed.cfg"
    preseed.write_text("d-i debian-installer/locale string en_US.UTF-8\n")
    assert run_cli("--dry-run", "--iso", str(out / "l.iso"), "--installer", "--preseed",
                   str(preseed)).code == 0


# --- --boot-test -----------------------------------------------------------------------------


def test_boot_test_without_anyone_to_log_in(run_cli: RunCli, out: Path) -> None:
    assert errors(run_cli("--dry-run", "--iso", str(out / "l.iso"), "--boot-test",
                          "--serial-console")) == [
        "--boot-test logs in to check the system, and nothing can log in to this one: add "
        "--user NAME/PASSWORD (with --sudo) or --root-password PASSWORD"]
    assert run_cli("--dry-run", "--iso", str(out / "l.iso"), "--boot-test", "--serial-console",
                   "--user", "alice/live", "--sudo").code == 0
