"""The guard that keeps unit tests off the real host catches what it should."""

from __future__ import annotations

import os
import socket

from tests.unit import hostguard


def test_writes_under_etc_and_var_cache_are_caught() -> None:
    assert hostguard.check("open", ("/etc/hostname", "w", 0))
    assert hostguard.check("open", ("/var/cache/vmdebootstrap/.lock", None,
                                    os.O_RDWR | os.O_CREAT))
    assert hostguard.check("os.mkdir", ("/var/cache/vmdebootstrap", 0o755, -1))
    assert hostguard.check("os.rename", ("/tmp/x", "/etc/x", -1, -1))
    assert hostguard.check("os.remove", (b"/etc/../etc/passwd", -1))


def test_reading_the_host_and_writing_elsewhere_are_fine(tmp_path: object) -> None:
    assert hostguard.check("open", ("/etc/os-release", "r", os.O_RDONLY)) is None
    assert hostguard.check("open", (f"{tmp_path}/etc/hostname", "w", 0)) is None
    assert hostguard.check("open", ("/etc-not/x", "w", 0)) is None
    assert hostguard.check("open", (3, "w", 0)) is None  # a file descriptor
    # A link inside a test's root that points at /etc/... writes nothing there.
    assert hostguard.check("os.symlink", ("/etc/systemd/system/x.service",
                                          f"{tmp_path}/root/x.service", -1)) is None
    assert hostguard.check("os.symlink", ("/tmp/x", "/etc/x", -1))


def test_network_connections_are_caught() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as inet:
        assert hostguard.check("socket.connect", (inet, ("192.0.2.1", 80)))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as local:
        assert hostguard.check("socket.connect", (local, "/run/x.sock")) is None


def test_the_guard_is_armed_in_every_unit_test() -> None:
    assert hostguard.armed
