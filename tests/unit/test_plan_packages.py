"""plan.packages: the kernel, the package list, --custom-package."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan.findings import Findings
from vmdebootstrap.plan.packages import (
    KERNELS,
    check_custom_debs,
    check_kernel,
    check_packages,
    name_problems,
    wanted_packages,
)
from vmdebootstrap.plan.target import Target

AMD64 = Target(arch="amd64", codename="trixie", native=True)
ARM64 = Target(arch="arm64", codename="trixie", native=False)


def kernel_of(s: Settings, output: str, target: Target = AMD64) -> tuple[str | None, Findings]:
    found = Findings()
    return check_kernel(s, target, output, found), found


def test_default_kernel() -> None:
    assert kernel_of(Settings(), "tarball") == (KERNELS["amd64"], Findings())
    assert kernel_of(Settings(), "tarball", ARM64)[0] == "linux-image-arm64"


def test_kernel_package_wins() -> None:
    assert kernel_of(Settings(kernel_package="linux-image-rt-amd64"), "iso")[0] == \
        "linux-image-rt-amd64"


def test_no_default_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    kernel, found = kernel_of(Settings(), "tarball", Target("sparc", "trixie", False))
    assert kernel is None and found.problems == []  # unknown arch: check_arch says so
    monkeypatch.delitem(KERNELS, "s390x")
    kernel, found = kernel_of(Settings(), "tarball", Target("s390x", "trixie", False))
    assert kernel is None
    assert found.problems == ["--arch s390x: no default kernel; give --kernel-package "
                              "or --no-kernel"]


def test_no_kernel_wins_with_a_note() -> None:
    kernel, found = kernel_of(Settings(no_kernel=True, kernel_package="linux-image-rt-amd64"),
                              "tarball")
    assert kernel is None and found.problems == []
    assert found.notes == ["--no-kernel wins over --kernel-package linux-image-rt-amd64"]


def test_an_iso_needs_a_kernel() -> None:
    assert kernel_of(Settings(no_kernel=True), "iso")[1].problems == [
        "--no-kernel: a --iso output needs a kernel to boot"]


@pytest.mark.parametrize("output", ["squash", "image"])
def test_no_kernel_is_a_warning_for_squash_and_image(output: str) -> None:
    kernel, found = kernel_of(Settings(no_kernel=True), output)
    assert kernel is None and found.problems == []
    assert len(found.notes) == 1 and "hook must provide one" in found.notes[0]


@pytest.mark.parametrize("output", ["tarball", "none"])
def test_no_kernel_fine_for_a_tarball(output: str) -> None:
    assert kernel_of(Settings(no_kernel=True), output)[1].problems == []


def test_name_problems() -> None:
    s = Settings(kernel_package="Linux Image", package=("less", "Bad Name", "g++"))
    assert name_problems(s) == ["--kernel-package: 'Linux Image' is not a package name",
                                "--package: 'Bad Name' is not a package name"]


def test_custom_debs(tmp_path: Path) -> None:
    deb, txt = tmp_path / "t_1_all.deb", tmp_path / "notes.txt"
    deb.write_bytes(b"!<arch>\n")
    txt.write_text("")
    found = Findings()
    debs = check_custom_debs(Settings(custom_package=(str(deb), str(txt),
                                                      str(tmp_path / "x.deb"))), found)
    assert debs == (deb,)
    assert found.problems == [f"--custom-package: {txt} is not a .deb file",
                              f"--custom-package: {tmp_path / 'x.deb'} does not exist"]


@pytest.mark.parametrize(("output", "live_boot", "init"), [
    ("tarball", False, False), ("squash", True, True), ("iso", True, True),
    ("image", False, True), ("none", False, False),
])
def test_wanted_by_output_kind(output: str, live_boot: bool, init: bool) -> None:
    wanted = wanted_packages(Settings(), AMD64, output, "minbase", None)
    assert ("live-boot" in wanted) is live_boot
    assert ("systemd-sysv" in wanted) is init
    assert "systemd-sysv" not in wanted_packages(Settings(), AMD64, output, None, None)


def test_wanted_order_without_duplicates() -> None:
    s = Settings(sudo=True, package=("less", "sudo", "linux-image-amd64", "less"))
    assert wanted_packages(s, AMD64, "squash", None, "linux-image-amd64") == [
        "linux-image-amd64", "live-boot", "sudo", "acpid", "less"]


def test_acpid_only_natively() -> None:
    assert "acpid" in wanted_packages(Settings(), AMD64, "tarball", None, None)
    assert "acpid" not in wanted_packages(Settings(), ARM64, "tarball", None, None)
    assert "acpid" not in wanted_packages(Settings(no_acpid=True), AMD64, "tarball", None,
                                          None)


@pytest.mark.parametrize(("codename", "networkd", "expected"), [
    ("trixie", True, ["systemd-resolved"]),
    ("bookworm", True, ["systemd-resolved"]),
    ("bullseye", True, []),
    ("trixie", False, ["ifupdown", "isc-dhcp-client"]),
])
def test_dhcp_packages(fake_releases: None, codename: str, networkd: bool,
                       expected: list[str]) -> None:
    s = Settings(enable_dhcp=True, systemd_networkd=networkd, no_acpid=True)
    assert wanted_packages(s, Target("amd64", codename, True), "tarball", None, None) == \
        expected


def test_check_packages_adds_the_bootloader_once() -> None:
    found = Findings()
    packages = check_packages(Settings(package=("grub-pc",)), AMD64, "image", None, found)
    assert packages.kernel == "linux-image-amd64"
    assert packages.names == ("linux-image-amd64", "acpid", "grub-pc", "e2fsprogs")
    assert packages.debs == ()
    assert found == Findings()


def test_check_packages_collects_every_problem() -> None:
    found = Findings()
    check_packages(Settings(no_kernel=True, package=("Bad",), custom_package=("x.deb",)),
                   AMD64, "iso", None, found)
    assert found.problems == ["--no-kernel: a --iso output needs a kernel to boot",
                              "--package: 'Bad' is not a package name",
                              "--custom-package: x.deb does not exist"]
