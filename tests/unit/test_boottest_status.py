"""The boot test's status callback: a short phrase each time it starts
waiting for something new, in order, from a fake guest on a fake QEMU."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_boottest import BOOT_NOISE, PROMPT, FakeGuest, debian_guest, secure_guest
from vmdebootstrap.boot import boottest as bt
from vmdebootstrap.boot import qemu


def iso(path: Path) -> Path:
    head = bytearray(0x8800)
    head[0x8000:0x8006] = b"\x01CD001"
    path.write_bytes(head)
    return path


@pytest.fixture
def fake_qemu(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeGuest]]:
    """boot_test talks to the FakeGuest put in the list instead of QEMU."""
    guests: list[FakeGuest] = []

    @contextlib.contextmanager
    def running(argv: list[str], **_kw: object) -> Iterator[object]:
        yield object()

    def plan(**kw: object) -> qemu.QemuPlan:
        # no firmware files to copy: the UEFI variable store is never read
        return qemu.QemuPlan(arch=str(kw["arch"]), firmware=str(kw["firmware"]),
                             accel=str(kw["accel"]), media=str(kw["media"]),
                             uefi_code="/c.fd", uefi_vars=Path("/v.fd"))

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(qemu.os.path, "isfile", lambda f: True)
    monkeypatch.setattr(bt, "qemu_running", running)
    monkeypatch.setattr(bt, "boot_plan", plan)
    monkeypatch.setattr(bt, "serial_of", lambda proc, **kw: guests[0].console())
    yield guests


def boot(image: Path, firmware: str, user: str | None, command: str | None = None
         ) -> tuple[bt.BootReport, list[str]]:
    said: list[str] = []
    report = bt.boot_test(image, firmware=firmware, arch="amd64", user=user,
                          password="live" if user else None, command=command, timeout=600,
                          accel="tcg", log=lambda _m: None, status=said.append)
    return report, said


def test_login_sudo_and_secure_boot_in_order(tmp_path: Path,
                                             fake_qemu: list[FakeGuest]) -> None:
    fake_qemu.append(FakeGuest([BOOT_NOISE, PROMPT], secure_guest("   6   0   0   0   1")))
    report, said = boot(iso(tmp_path / "live.iso"), "uefi-sb", "user")
    assert report.ok, report.error
    assert said == ["starting QEMU (uefi-sb, tcg)", "waiting for the login prompt",
                    "logging in as user", "checking sudo", "checking Secure Boot",
                    "stopping QEMU"]


def test_login_prompt_only(tmp_path: Path, fake_qemu: list[FakeGuest]) -> None:
    fake_qemu.append(FakeGuest([BOOT_NOISE, PROMPT], debian_guest()))
    report, said = boot(iso(tmp_path / "live.iso"), "bios", None)
    assert report.ok
    assert said == ["starting QEMU (bios, tcg)", "waiting for the login prompt",
                    "stopping QEMU"]


def test_a_given_command_and_a_failed_boot(tmp_path: Path,
                                          fake_qemu: list[FakeGuest]) -> None:
    fake_qemu.append(FakeGuest([BOOT_NOISE, PROMPT], debian_guest()))
    report, said = boot(iso(tmp_path / "live.iso"), "uefi", "user", command="true")
    assert said[2:4] == ["logging in as user", "running the command"]
    fake_qemu[0] = FakeGuest(["Kernel panic - not syncing: VFS\r\n"], debian_guest())
    report, said = boot(iso(tmp_path / "live.iso"), "uefi", "user")
    assert not report.ok
    # it never got past the login prompt, and still says it stops QEMU
    assert said == ["starting QEMU (uefi, tcg)", "waiting for the login prompt",
                    "stopping QEMU"]


def test_root_reads_debian_version() -> None:
    assert bt._doing(None, "root") == "reading /etc/debian_version"
    assert bt._doing(None, "user") == "checking sudo"
    assert bt._doing("uptime", "root") == "running the command"


def test_no_status_callback_is_fine(tmp_path: Path, fake_qemu: list[FakeGuest]) -> None:
    fake_qemu.append(FakeGuest([BOOT_NOISE, PROMPT], debian_guest()))
    report = bt.boot_test(iso(tmp_path / "live.iso"), firmware="bios", arch="amd64",
                          user="user", password="live", command=None, timeout=600,
                          accel="tcg", log=lambda _m: None)
    assert report.ok


def test_the_kvm_probe_is_announced() -> None:
    said: list[str] = []
    qemu._KVM_CACHE.clear()
    try:
        assert qemu.choose_accel("auto", "amd64", host="amd64", kvm_device_ok=True,
                                 probe=lambda a: True, status=said.append) == "kvm"
        # decided once: the second boot does not probe, nor say so
        qemu.choose_accel("auto", "amd64", host="amd64", kvm_device_ok=True,
                          probe=lambda a: True, status=said.append)
        qemu.choose_accel("tcg", "amd64", status=said.append)
    finally:
        qemu._KVM_CACHE.clear()
    assert said == ["checking that KVM runs a guest"]


def test_check_output_passes_the_callback_to_each_boot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []

    def fake_boot_test(path: Path, **kw: object) -> bt.BootReport:
        seen.append(kw["status"])
        return bt.BootReport(str(kw["firmware"]), "tcg", 1.0, "", True)

    monkeypatch.setattr(bt, "boot_test", fake_boot_test)
    monkeypatch.setattr(bt, "missing_boot_tools", lambda arch, firmwares: [])
    monkeypatch.setattr(bt, "efi_loader_signed", lambda *a: False)

    def status(_what: str) -> None:
        pass

    bt.check_output(iso(tmp_path / "out.iso"), arch="amd64", user=None, password=None,
                    log=lambda _m: None, status=status)
    assert seen == [status, status]  # bios and uefi
