"""plan.boot: what --boot-test needs, who it logs in as, and whether the
host has QEMU and the firmware to boot the output."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.unit.conftest import SECRET
from vmdebootstrap.intent.plan import Login
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan import boot as boot_module
from vmdebootstrap.plan import boot_login_of
from vmdebootstrap.plan.boot import boot_firmwares, check_boot_test
from vmdebootstrap.plan.findings import Findings
from vmdebootstrap.plan.target import Target

AMD64 = Target("amd64", "trixie", True)
# Can boot and log in: what the checks below start from.
BOOTS = Settings(boot_test=True, serial_console=True, root_password=SECRET)


def boot_problems(s: Settings, output: str, target: Target | None = None) -> list[str]:
    found = Findings()
    check_boot_test(s, output, found, target=target)
    return found.problems


@pytest.mark.parametrize("output", ["image", "iso"])
def test_bootable_outputs(output: str) -> None:
    assert boot_problems(BOOTS, output) == []


@pytest.mark.parametrize("output", ["tarball", "squash"])
def test_outputs_that_cannot_be_booted(output: str) -> None:
    assert boot_problems(BOOTS, output) == [
        "--boot-test needs a bootable output: --iso or --image"]


def test_boot_test_needs_the_serial_console() -> None:
    assert boot_problems(BOOTS.with_values(serial_console=False), "iso") == [
        "--boot-test logs in on the serial console: add --serial-console"]


ADD_LOGIN = "add --user NAME/PASSWORD (with --sudo) or --root-password PASSWORD"


@pytest.mark.parametrize(("changes", "why"), [
    ({"root_password": None}, ""),
    ({"root_password": None, "user": ("alice/",)},
     " (a user given as NAME/ has an empty password, to be chosen at the first login, "
     "which the boot test cannot do)"),
    ({"root_password": None, "lock_root_password": True}, " (--lock-root-password locks root)"),
])
def test_boot_test_needs_someone_who_can_log_in(changes: dict[str, object], why: str) -> None:
    assert boot_problems(BOOTS.with_values(**changes), "image") == [
        f"--boot-test logs in to check the system, and nothing can log in to this one{why}: "
        f"{ADD_LOGIN}"]


def test_a_user_with_a_password_can_log_in() -> None:
    s = BOOTS.with_values(root_password=None, user=(f"alice/{SECRET}",), sudo=True)
    assert boot_problems(s, "image") == []


def test_nothing_checked_without_boot_test() -> None:
    assert boot_problems(Settings(), "tarball") == []


@pytest.mark.parametrize(("output", "arch", "uefi", "signed", "firmwares"), [
    ("iso", "amd64", False, True, ["bios", "uefi", "uefi-sb"]),
    ("iso", "amd64", False, False, ["bios", "uefi"]),
    ("iso", "arm64", False, False, ["uefi"]),
    ("image", "amd64", False, False, ["bios"]),
    ("image", "amd64", True, True, ["uefi", "uefi-sb"]),
    ("image", "i386", True, False, ["uefi"]),
    ("image", "arm64", True, True, ["uefi", "uefi-sb"]),  # AAVMF with Microsoft's keys
])
def test_boot_firmwares(output: str, arch: str, uefi: bool, signed: bool,
                        firmwares: list[str]) -> None:
    assert boot_firmwares(output, arch, uefi, signed) == firmwares



@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    """missing_boot_tools, answering that OVMF is not installed."""
    calls: list[tuple[str, list[str]]] = []
    real = boot_module.missing_boot_tools

    def fake(arch: str, firmwares: Sequence[str], **kwargs: object) -> list[str]:
        if kwargs:  # what cannot be booted at all: the real answer
            return real(arch, firmwares, **kwargs)  # type: ignore[arg-type]
        calls.append((arch, list(firmwares)))
        return ["no UEFI firmware for amd64 (...): install the ovmf package"]

    monkeypatch.setattr(boot_module, "missing_boot_tools", fake)
    return calls


def test_missing_qemu_or_firmware_refused(asked: list[tuple[str, list[str]]]) -> None:
    assert boot_problems(BOOTS, "iso", AMD64) == [
        "--boot-test: no UEFI firmware for amd64 (...): install the ovmf package"]
    assert asked == [("amd64", ["bios", "uefi", "uefi-sb"])]


def test_missing_tools_are_a_note_in_a_dry_run(asked: list[tuple[str, list[str]]]) -> None:
    found = Findings()
    check_boot_test(BOOTS.with_values(dry_run=True), "iso", found, target=AMD64)
    assert found.problems == []
    assert found.notes == ["--boot-test: no UEFI firmware for amd64 (...): install the ovmf "
                           "package (a real build refuses to start without it)"]


def test_what_cannot_be_booted_is_refused_in_a_dry_run_too() -> None:
    s = BOOTS.with_values(dry_run=True)
    assert boot_problems(s, "image", Target("armhf", "trixie", False)) == [
        "--boot-test: armhf boots only with UEFI firmware, not bios"]


def test_the_real_check_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    problems = boot_problems(BOOTS, "image", AMD64)
    assert problems == ["--boot-test: qemu-system-x86_64 is not installed: install the "
                        "qemu-system-x86 package"]


@pytest.mark.parametrize(("settings", "login"), [
    (Settings(user=("a/", f"b/{SECRET}"), root_password="r"), Login("b", SECRET)),
    (Settings(user=("a/",), root_password=SECRET), Login("root", SECRET)),
    (Settings(user=("a/",)), None),
    (Settings(), None),
])
def test_boot_login_of(settings: Settings, login: Login | None) -> None:
    assert boot_login_of(settings) == login
    if login is not None:
        assert SECRET not in repr(login)
