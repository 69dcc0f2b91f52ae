"""plan.target: the architecture, the distribution, a foreign architecture."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan import Host
from vmdebootstrap.plan.findings import Findings
from vmdebootstrap.plan.target import (
    Target,
    check_arch,
    check_distribution,
    check_foreign,
    check_target,
)


def test_native_target(host: Host) -> None:
    found = Findings()
    target = check_target(Settings(), host, found)
    assert target == Target(arch="amd64", codename="trixie", native=True, foreign=None)
    assert target.known_arch
    assert found == Findings()


def test_compatible_arch_is_native(host: Host) -> None:
    target = check_target(Settings(arch="i386"), host, Findings())
    assert target.native and target.foreign is None


def test_foreign_target(host: Host) -> None:
    found = Findings()
    target = check_target(Settings(arch="arm64", distribution="bookworm"), host, found)
    assert (target.arch, target.codename, target.native) == ("arm64", "bookworm", False)
    assert target.foreign is not None and target.foreign.arch == "arm64"
    assert found == Findings()


def test_unknown_arch_reported_once(host: Host) -> None:
    found = Findings()
    target = check_target(Settings(arch="sparc"), host, found)
    assert not target.known_arch and target.foreign is None
    assert len(found.problems) == 1
    assert found.problems[0].startswith("--arch: unknown architecture 'sparc'; known: ")


def test_check_arch_defaults_to_the_host(host: Host) -> None:
    arm64 = dataclasses.replace(host, arch="arm64")
    assert check_arch(Settings(), arm64, Findings()) == "arm64"


def test_unknown_distribution_is_empty(host: Host) -> None:
    found = Findings()
    assert check_distribution(Settings(distribution="hamm2"), host, found) == ""
    assert len(found.problems) == 1 and "--distribution 'hamm2'" in found.problems[0]


def test_testing_resolved_with_the_hosts_today(host: Host) -> None:
    assert check_distribution(Settings(distribution="testing"), host, Findings()) == "forky"


def test_unregistered_handler(host: Host) -> None:
    found = Findings()
    assert check_foreign(Settings(), "riscv64", host, found) is None
    assert len(found.problems) == 1
    assert "qemu-riscv64" in found.problems[0] and "is not registered" in found.problems[0]
    assert found.notes == []


def test_foreign_option_ignored_natively(host: Host, tmp_path: Path) -> None:
    found = Findings()
    assert check_foreign(Settings(foreign=str(tmp_path / "qemu")), "amd64", host,
                         found) is None
    assert found.notes == ["--foreign is ignored: amd64 runs natively on this amd64 host"]
    assert found.problems == []


def test_foreign_option_must_exist(host: Host, tmp_path: Path) -> None:
    found = Findings()
    missing = tmp_path / "qemu-aarch64-static"
    assert check_foreign(Settings(foreign=str(missing)), "arm64", host, found) is None
    assert found.problems == [f"--foreign {missing}: no such file"]
    assert found.notes == []
