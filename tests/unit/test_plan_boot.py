"""plan.boot: what --boot-test needs, and who it logs in as."""

from __future__ import annotations

import pytest

from tests.unit.conftest import SECRET
from vmdebootstrap.intent.plan import Login
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan import boot_login_of
from vmdebootstrap.plan.boot import check_boot_test
from vmdebootstrap.plan.findings import Findings


def boot_problems(s: Settings, output: str) -> list[str]:
    found = Findings()
    check_boot_test(s, output, found)
    return found.problems


@pytest.mark.parametrize("output", ["image", "iso"])
def test_bootable_outputs(output: str) -> None:
    assert boot_problems(Settings(boot_test=True, serial_console=True), output) == []


@pytest.mark.parametrize("output", ["tarball", "squash"])
def test_outputs_that_cannot_be_booted(output: str) -> None:
    assert boot_problems(Settings(boot_test=True, serial_console=True), output) == [
        "--boot-test needs a bootable output: --iso or --image"]


def test_boot_test_needs_the_serial_console() -> None:
    assert boot_problems(Settings(boot_test=True), "iso") == [
        "--boot-test logs in on the serial console: add --serial-console"]


def test_nothing_checked_without_boot_test() -> None:
    assert boot_problems(Settings(), "tarball") == []


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
