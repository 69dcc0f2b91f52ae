"""vmdebootstrap-boottest refuses what it cannot boot before QEMU starts:
exit 2, one "vmdebootstrap-boottest: error: ..." line per problem, nothing
started; and its --help and --version."""

from __future__ import annotations

import argparse
import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmdebootstrap import __version__
from vmdebootstrap.boot import boottest as bt
from vmdebootstrap.boot import boottest_args, media, qemu

PREFIX = "vmdebootstrap-boottest: error: "


def iso(hybrid: bool = False) -> bytes:
    head = bytearray(0x8800)
    head[0x8000:0x8006] = b"\x01CD001"
    if hybrid:
        head[510:512] = b"\x55\xaa"
    return bytes(head)


def mbr_disk() -> bytes:
    head = bytearray(4096)
    head[446 + 4] = 0x83
    head[510:512] = b"\x55\xaa"
    return bytes(head)


def gpt_only() -> bytes:
    """A GPT with no protective MBR: "EFI PART" in LBA 1 is enough."""
    head = bytearray(4096)
    head[512:520] = b"EFI PART"
    return bytes(head)


QCOW2 = b"QFI\xfb" + bytes(508)


@pytest.fixture
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if a refusal still boots, probes KVM or reads the password."""
    def never(*_a: object, **_kw: object) -> None:
        pytest.fail("started something")

    for name in ("boot_test", "start_installer", "choose_accel", "qemu_running"):
        monkeypatch.setattr(bt, name, never)
    monkeypatch.setattr(bt, "efi_loader_signed", lambda *a: False)  # no xorriso here
    monkeypatch.setattr(bt.sys, "stdin", io.StringIO("the password\n"))
    yield
    assert bt.sys.stdin.read() == "the password\n"


@pytest.fixture
def all_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(qemu.os.path, "isfile", lambda f: True)


def refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The error lines of a run that must be refused."""
    assert bt.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines and all(line.startswith(PREFIX) for line in lines), err
    return [line.removeprefix(PREFIX) for line in lines]


# ---- FILE -----------------------------------------------------------------------------

@pytest.mark.usefixtures("nothing_starts", "all_tools")
def test_a_text_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n" * 40)
    assert refusal([str(passwd), "--arch", "amd64", "--user", "user/-"], capsys) == [
        f"{passwd} is not an ISO, a disk image with a partition table, or a qcow2 image"]


@pytest.mark.usefixtures("nothing_starts", "all_tools")
@pytest.mark.parametrize(("content", "why"), [
    (b"", "not an ISO"), (bytes(64 * 1024), "not an ISO"),
    (b"\x55\xaa", "not an ISO"),  # too short to have the signature at 510
])
def test_no_known_signature_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       content: bytes, why: str) -> None:
    image = tmp_path / "live.iso"  # the name alone proves nothing
    image.write_bytes(content)
    assert why in refusal([str(image), "--arch", "amd64"], capsys)[0]


@pytest.mark.usefixtures("nothing_starts", "all_tools")
def test_missing_file_directory_and_device(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert refusal([str(tmp_path / "nope.iso"), "--arch", "amd64"], capsys) == [
        f"{tmp_path / 'nope.iso'} does not exist"]
    assert refusal([str(tmp_path), "--arch", "amd64"], capsys) == [
        f"{tmp_path} is a directory: the boot test boots image files"]
    assert refusal(["/dev/null", "--arch", "amd64"], capsys) == [
        "/dev/null is not a regular file: the boot test boots image files"]


@pytest.mark.usefixtures("nothing_starts", "all_tools")
def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "live.iso"
    image.write_bytes(iso())

    def denied(path: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(path))

    # (root reads a chmod 000 file, so the refusal of open() is injected)
    monkeypatch.setattr(media, "read_header", denied)
    assert refusal([str(image), "--arch", "amd64"], capsys) == [
        f"cannot read {image}: Permission denied"]


@pytest.mark.parametrize(("name", "content", "found"), [
    ("live.iso", iso(), "iso"), ("live.img", iso(), "iso"),  # not hybrid: only a CD
    ("live.iso", iso(hybrid=True), "iso"), ("copy.img", iso(hybrid=True), "raw"),
    ("disk.img", mbr_disk(), "raw"), ("disk.iso", mbr_disk(), "raw"),
    ("disk.raw", gpt_only(), "raw"), ("disk.img", QCOW2, "qcow2"),
])
def test_what_each_image_boots_as(tmp_path: Path, name: str, content: bytes,
                                  found: str) -> None:
    image = tmp_path / name
    image.write_bytes(content)
    assert media.check_image(image)[0] == found


@pytest.mark.parametrize(("content", "asked", "words"), [
    (mbr_disk(), "iso", "is a disk image with a partition table, not an ISO 9660 image: "
     "boot it as a disk with --media raw, or leave --media out"),
    (iso(), "raw", "is an ISO 9660 image, not a disk image with a partition table: "
     "boot it as a CD with --media iso, or leave --media out"),
    (iso(hybrid=True), "qcow2", "is a hybrid ISO (an ISO 9660 image with a partition "
     "table), not a qcow2 image"),
    (QCOW2, "raw", "is a qcow2 image, not a disk image with a partition table: "
     "boot it with --media qcow2"),
    (QCOW2, "iso", "is a qcow2 image, not an ISO 9660 image"),
])
def test_media_contradicting_the_contents(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch, content: bytes,
                                          asked: str, words: str) -> None:
    image = tmp_path / "f.img"
    image.write_bytes(content)
    with pytest.raises(qemu.BootTestRefused) as refused:
        media.check_image(image, asked)
    assert str(refused.value).startswith(f"--media {asked}, but {image} {words}")
    monkeypatch.setattr(bt, "boot_test", lambda *a, **kw: pytest.fail("booted"))
    assert refusal([str(image), "--media", asked, "--arch", "amd64"], capsys) == [
        str(refused.value)]


@pytest.mark.parametrize(("content", "asked"), [
    (iso(hybrid=True), "iso"), (iso(hybrid=True), "raw"), (QCOW2, "qcow2"),
    (mbr_disk(), "raw")])
def test_media_agreeing_with_the_contents(tmp_path: Path, content: bytes, asked: str) -> None:
    image = tmp_path / "f.img"
    image.write_bytes(content)
    assert media.check_image(image, asked)[0] == asked


# ---- QEMU and firmware ----------------------------------------------------------------

@pytest.mark.usefixtures("nothing_starts")
def test_missing_emulator_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "live.iso"
    image.write_bytes(iso())
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(qemu.os.path, "isfile", lambda f: True)
    assert refusal([str(image), "--arch", "arm64", "--user", "user/-"], capsys) == [
        "qemu-system-aarch64 is not installed: install the qemu-system-arm package"]


@pytest.mark.usefixtures("nothing_starts")
def test_missing_firmware_for_each_boot_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "live.iso"
    image.write_bytes(iso())
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(qemu.os.path, "isfile", lambda f: False)
    assert refusal([str(image), "--arch", "amd64", "--firmware", "all"], capsys) == [
        "qemu-system-x86_64 is not installed: install the qemu-system-x86 package",
        "no UEFI firmware for amd64 (/usr/share/OVMF/OVMF_CODE_4M.fd with "
        "/usr/share/OVMF/OVMF_VARS_4M.fd): install the ovmf package",
        "no UEFI firmware with Secure Boot for amd64 (/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
        " with /usr/share/OVMF/OVMF_VARS_4M.ms.fd): install the ovmf package",
        "no 32-bit UEFI firmware for amd64 (/usr/share/OVMF/OVMF32_CODE_4M.secboot.fd with "
        "/usr/share/OVMF/OVMF32_VARS_4M.fd): install the ovmf-ia32 package"]
    assert refusal([str(image), "--arch", "arm64", "--firmware", "all"], capsys) == [
        "qemu-system-aarch64 is not installed: install the qemu-system-arm package",
        "no UEFI firmware for arm64 (/usr/share/AAVMF/AAVMF_CODE.fd with "
        "/usr/share/AAVMF/AAVMF_VARS.fd): install the qemu-efi-aarch64 package",
        "no UEFI firmware with Secure Boot for arm64 (/usr/share/AAVMF/AAVMF_CODE.ms.fd with "
        "/usr/share/AAVMF/AAVMF_VARS.ms.fd): install the qemu-efi-aarch64 package"]
    assert refusal([str(image), "--arch", "i386", "--firmware", "uefi"], capsys)[1].endswith(
        "install the ovmf-ia32 package")
    assert refusal([str(image), "--arch", "arm64", "--firmware", "bios"], capsys)[1] == (
        "arm64 boots only with UEFI firmware, not bios")


@pytest.mark.usefixtures("nothing_starts", "all_tools")
def test_bad_user_and_installer_on_a_disk(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "live.iso"
    image.write_bytes(iso())
    assert refusal([str(image), "--arch", "amd64", "--user", "Bad User/x"], capsys) == [
        "--user: 'Bad User' is not a user name"]
    disk = tmp_path / "disk.img"
    disk.write_bytes(mbr_disk())
    assert refusal([str(disk), "--arch", "amd64", "--installer"], capsys)[0].startswith(
        f"--installer: {disk} is not booted as an ISO")


def test_boot_test_and_check_output_refuse_too(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "live.iso"
    image.write_bytes(iso())
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(bt, "qemu_running", lambda *a, **kw: pytest.fail("started QEMU"))
    with pytest.raises(qemu.BootTestRefused, match="qemu-system-x86_64 is not installed"):
        bt.boot_test(image, firmware="bios", arch="amd64", user=None, password=None,
                     command=None, timeout=1, accel="tcg")
    # --boot-test: refused before the first boot, not after the bios one
    monkeypatch.setattr(bt, "efi_loader_signed", lambda *a: False)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(qemu.os.path, "isfile", lambda f: False)
    monkeypatch.setattr(bt, "boot_test", lambda *a, **kw: pytest.fail("booted"))
    with pytest.raises(qemu.BootTestRefused, match=r"^no UEFI firmware for amd64 .*ovmf"):
        bt.check_output(image, arch="amd64", user=None, password=None)


# ---- the command line -----------------------------------------------------------------

def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        bt.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"vmdebootstrap-boottest {__version__}\n"


@pytest.mark.parametrize("argv", [["--timeout", "0"], ["--memory", "-1"],
                                  ["--timeout", "soon"], ["--arch", "vax"]])
def test_bad_numbers_and_choices_exit_2(argv: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        bt.parse_args(["x.iso", *argv])
    assert done.value.code == 2
    assert PREFIX + "argument " + argv[0] in capsys.readouterr().err


def test_help_says_each_option_its_choices_and_its_default_once() -> None:
    parser = boottest_args.build_parser()
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        assert action.help, f"{action.option_strings} has no help"
        if action.choices:
            assert f"(one of: {', '.join(action.choices)})" in action.help
        if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            assert action.help.count("(default:") == 1, action.help
    assert "(default: 600)" in text and "(default: 1024)" in text and "(default: auto)" in text
    assert "--installer instead" in text and "(default: no)" in text
    assert "%(default)" not in text and "{" not in text  # no argparse choice braces
    assert re.search(r"\buefi-\s", parser.format_help()) is None  # choices are not split
    titles = [g.title for g in parser._action_groups]
    assert titles[-3:] == ["what to boot", "what to prove", "QEMU"]
