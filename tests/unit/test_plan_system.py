"""plan.system: host name, users, root password, network, hook, serial console."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.conftest import SECRET
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan import Host, serial_getty_of, serial_tty_of
from vmdebootstrap.plan.findings import Findings
from vmdebootstrap.plan.system import check_hook, check_system, check_users, system_of


def system_problems(host: Host, **values: object) -> list[str]:
    found = Findings()
    check_system(Settings().with_values(**values), host, found)
    return found.problems


def test_defaults(host: Host) -> None:
    found = Findings()
    assert check_system(Settings(), host, found) == ((), None)
    assert found == Findings()


def test_hostname(host: Host) -> None:
    assert system_problems(host, hostname="build.example.org") == []
    assert system_problems(host, hostname="bad_host") == [
        "--hostname: 'bad_host' is not a valid host name "
        "(letters, digits and '-', dot-separated labels)"]


def test_root_password_or_lock(host: Host) -> None:
    problems = system_problems(host, root_password=SECRET, lock_root_password=True)
    assert problems == ["--root-password and --lock-root-password contradict each other: "
                        "give one"]


def test_networkd_off_needs_initramfs(host: Host) -> None:
    assert system_problems(host, systemd_networkd=False, no_update_initramfs=True) == [
        "--no-systemd-networkd requires updating the initramfs, so it cannot be combined "
        "with --no-update-initramfs"]
    assert system_problems(host, systemd_networkd=False) == []


def test_users(fake_crypt: None) -> None:
    found = Findings()
    alice, bob = check_users(Settings(user=(f"alice/{SECRET}", "bob/")), found)
    assert alice.name == "alice" and alice.password_hash
    assert SECRET not in alice.password_hash
    assert bob.name == "bob" and bob.empty_password
    assert found == Findings()


def test_every_bad_user_reported(fake_crypt: None) -> None:
    found = Findings()
    users = check_users(Settings(user=(SECRET, "Alice/x", "a/x", "a/y")), found)
    assert [u.name for u in users] == ["a", "a"]
    assert len(found.problems) == 3
    assert found.problems[-1] == "--user: the same user is given twice"
    assert not any(SECRET in p for p in found.problems)


def test_sudo_without_users_is_noted(fake_crypt: None) -> None:
    found = Findings()
    check_users(Settings(sudo=True), found)
    assert found.notes == ["--sudo without --user: sudo is installed, nobody is added to it"]
    found = Findings()
    check_users(Settings(sudo=True, user=("a/",)), found)
    assert found.notes == []


def test_hook(host: Host) -> None:
    assert check_hook(Settings(), host, Findings()) is None
    script = host.cwd / "h.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert check_hook(Settings(customize="h.sh"), host, Findings()) == script


def test_hook_beside_a_config_file(host: Host, tmp_path: Path) -> None:
    confdir = tmp_path / "conf"
    confdir.mkdir()
    script = confdir / "h.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    s = Settings(customize="h.sh", config_files=(str(confdir / "live.conf"),))
    assert check_hook(s, host, Findings()) == script


def test_missing_hook(host: Host) -> None:
    found = Findings()
    assert check_hook(Settings(customize="nope.sh"), host, found) is None
    assert len(found.problems) == 1 and "--customize" in found.problems[0]


@pytest.mark.parametrize(("arch", "command", "tty"), [
    ("amd64", None, "ttyS0"),
    ("arm64", None, "ttyAMA0"),
    ("armhf", None, "ttyAMA0"),
    ("amd64", "/sbin/agetty ttyS1 9600", "ttyS1"),
    ("arm64", "/sbin/agetty ttyAMA1 115200", "ttyAMA1"),
    ("amd64", "/bin/true", "ttyS0"),
])
def test_serial_tty_of(arch: str, command: str | None, tty: str) -> None:
    s = Settings() if command is None else Settings(serial_console_command=command)
    assert serial_tty_of(s, arch) == tty


def test_serial_getty_of() -> None:
    assert serial_getty_of(Settings(), "arm64") == "/sbin/getty -L ttyAMA0 115200 vt100"
    assert serial_getty_of(Settings(), "amd64") == "/sbin/getty -L ttyS0 115200 vt100"
    own = Settings(serial_console_command="/sbin/agetty ttyS0 9600")
    assert serial_getty_of(own, "arm64") == "/sbin/agetty ttyS0 9600"


def test_system_of(fake_crypt: None) -> None:
    s = Settings(hostname="live", root_password=SECRET, sudo=True, enable_dhcp=True,
                 serial_console=True, configure_apt=True, hook_timeout=60)
    system = system_of(s, "arm64", (), Path("/h.sh"))
    assert system.root_password_hash and SECRET not in system.root_password_hash
    assert (system.hostname, system.sudo, system.dhcp) == ("live", True, "networkd")
    assert (system.serial_tty, system.serial_getty) == (
        "ttyAMA0", "/sbin/getty -L ttyAMA0 115200 vt100")
    assert system.configure_apt and system.update_initramfs
    assert (system.hook, system.hook_timeout) == (Path("/h.sh"), 60)
    assert SECRET not in repr(system)


def test_system_of_without_extras() -> None:
    system = system_of(Settings(systemd_networkd=False, lock_root_password=True,
                                no_update_initramfs=True), "amd64", (), None)
    assert system.root_password_hash is None and system.lock_root
    assert system.dhcp is None and system.serial_tty is None and system.serial_getty is None
    assert not system.update_initramfs
    assert system_of(Settings(enable_dhcp=True, systemd_networkd=False), "amd64", (),
                     None).dhcp == "ifupdown"
