"""plan.disk: UEFI, bootloaders, filesystems, sizes and the layout of an image."""

from __future__ import annotations

import dataclasses

import pytest

from tests.unit.conftest import parse
from vmdebootstrap.intent.plan import DiskSpec, ImageSpec
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan import UEFI_ARCHES, Host, make_plan
from vmdebootstrap.plan.disk import (
    MiB,
    boot_packages,
    check_bootloader,
    check_disk,
    image_problems,
    image_spec_of,
    size_problems,
    uefi_problems,
)
from vmdebootstrap.plan.findings import Findings
from vmdebootstrap.plan.target import Target

G = 10**9
AMD64 = Target(arch="amd64", codename="trixie", native=True)


def disk_problems(s: Settings, output: str = "image", target: Target = AMD64) -> list[str]:
    found = Findings()
    check_disk(s, target, output, None, found)
    assert found.notes == []
    return found.problems


def test_a_plain_image() -> None:
    assert disk_problems(Settings(size=3 * G)) == []


@pytest.mark.parametrize("arch", UEFI_ARCHES)
def test_uefi_arches(arch: str) -> None:
    assert uefi_problems(Settings(use_uefi=True), Target(arch, "trixie", True)) == []


def test_uefi_problems_all_together() -> None:
    s = Settings(use_uefi=True, extlinux=True, bootoffset=MiB)
    assert uefi_problems(s, Target("armel", "wheezy", True)) == [
        "--use-uefi: no UEFI grub for armel (UEFI is supported on amd64, i386, arm64, armhf)",
        "--use-uefi needs --grub (not --extlinux or --no-grub)",
        "--bootoffset cannot be combined with --use-uefi",
        "--use-uefi: wheezy supports UEFI only on amd64, not armel",
    ]


def test_uefi_checked_for_images_only() -> None:
    assert disk_problems(Settings(use_uefi=True, grub=False), "image")[0] == \
        "--use-uefi needs --grub (not --extlinux or --no-grub)"
    # Other outputs ignore --use-uefi: plan.ignored warns about it.
    assert disk_problems(Settings(use_uefi=True, grub=False), "tarball") == []


def test_no_uefi_no_uefi_problems() -> None:
    assert uefi_problems(Settings(extlinux=True, bootoffset=MiB), AMD64) == []


def test_image_problems() -> None:
    s = Settings(roottype="btrfs", extlinux=True, swap=100 * MiB)
    assert image_problems(s, Target("arm64", "trixie", False)) == [
        "--image for arm64 needs --use-uefi (arm64 boots with UEFI)",
        "--roottype btrfs cannot be used with --extlinux",
        "--swap: at least 256MiB",
    ]


def test_wheezy_ext4() -> None:
    assert image_problems(Settings(), Target("amd64", "wheezy", True)) == [
        "--roottype ext4: wheezy images using ext4 will not boot; use --roottype ext3"]
    assert image_problems(Settings(roottype="ext3"), Target("amd64", "wheezy", True)) == []


@pytest.mark.parametrize(("settings", "variant", "need_mib"), [
    (Settings(), None, 700),
    (Settings(), "minbase", 550),
    (Settings(no_kernel=True), None, 400),
    (Settings(swap=256 * MiB, bootsize=100 * MiB), None, 1056),
    (Settings(use_uefi=True), None, 828),
])
def test_size_floor(settings: Settings, variant: str | None, need_mib: int) -> None:
    assert size_problems(settings.with_values(size=need_mib * MiB), variant) == []
    [problem] = size_problems(settings.with_values(size=need_mib * MiB - 1), variant)
    assert problem.startswith(f"--size: {need_mib * MiB - 1} bytes is too small; "
                              f"this build needs at least {need_mib} MiB (e.g. --size ")


def test_size_suggests_whole_gigabytes() -> None:
    assert size_problems(Settings(size=100 * 10**6), None) == [
        "--size: 100000000 bytes is too small; this build needs at least 700 MiB "
        "(e.g. --size 1G)"]


def test_image_checks_only_for_images() -> None:
    s = Settings(size=1, swap=1, roottype="btrfs", extlinux=True)
    assert disk_problems(s, "tarball") == []


@pytest.mark.parametrize("output", ["tarball", "squash", "iso"])
def test_convert_qcow2_only_for_images(output: str) -> None:
    assert disk_problems(Settings(convert_qcow2=True), output) == [
        "--convert-qcow2 only applies to --image"]
    assert disk_problems(Settings(convert_qcow2=True, size=3 * G)) == []


def test_layout_checked_only_when_the_rest_is_fine() -> None:
    bad_layout = Settings(size=3 * G, extlinux=True, bootsize=256 * MiB, boottype="xfs")
    [problem] = disk_problems(bad_layout)
    assert problem.startswith("--boottype xfs: extlinux cannot boot from xfs")
    # With another problem, the layout waits: it would build on wrong options.
    assert disk_problems(bad_layout.with_values(swap=1)) == ["--swap: at least 256MiB"]


def test_no_layout_for_an_unknown_arch() -> None:
    assert disk_problems(Settings(size=3 * G), target=Target("sparc", "trixie", False)) == []


def test_boot_packages() -> None:
    assert boot_packages(Settings(), "amd64", "image") == ["grub-pc", "e2fsprogs"]
    assert boot_packages(Settings(use_uefi=True, bootsize=256 * MiB, boottype="vfat",
                                  secure_boot=False),
                         "arm64", "image") == ["grub-efi-arm64", "e2fsprogs", "dosfstools"]
    assert boot_packages(Settings(use_uefi=True), "arm64", "image", "bookworm") == [
        "grub-efi-arm64", "e2fsprogs", "dosfstools",
        "shim-signed", "shim-helpers-arm64-signed", "grub-efi-arm64-signed"]
    # Secure Boot (on by default) where Debian signs the chain, and from buster on
    signed = ["shim-signed", "shim-helpers-amd64-signed", "grub-efi-amd64-signed"]
    assert boot_packages(Settings(use_uefi=True), "amd64", "image", "bookworm") == [
        "grub-efi-amd64", "e2fsprogs", "dosfstools", *signed]
    assert boot_packages(Settings(use_uefi=True), "amd64", "image", "stretch") == [
        "grub-efi-amd64", "e2fsprogs", "dosfstools"]
    assert boot_packages(Settings(use_uefi=True, secure_boot=False), "amd64", "image",
                         "bookworm") == ["grub-efi-amd64", "e2fsprogs", "dosfstools"]
    assert boot_packages(Settings(), "amd64", "image", "bookworm") == ["grub-pc", "e2fsprogs"]
    assert boot_packages(Settings(extlinux=True, roottype="btrfs"), "amd64", "image") == [
        "extlinux", "syslinux-common", "btrfs-progs"]
    assert boot_packages(Settings(), "amd64", "tarball") == []
    assert boot_packages(Settings(use_uefi=True), "armel", "image") == []


def test_image_spec_of() -> None:
    s = Settings(size=3 * G, mbr=True, sparse=True, convert_qcow2=True)
    assert image_spec_of(s, "amd64", "image") == ImageSpec(
        DiskSpec.from_settings(s, "amd64"), mbr=True, sparse=True, qcow2=True)
    assert image_spec_of(s, "amd64", "tarball") is None
    uefi = Settings(size=3 * G, use_uefi=True)
    assert image_spec_of(uefi, "amd64", "image", "bookworm").secure_boot  # type: ignore[union-attr]
    assert not image_spec_of(uefi, "i386", "image", "bookworm").secure_boot  # type: ignore[union-attr]


# --- boards: architectures with no bootloader of ours (1.x's board examples) ---------


def bootloader_of(arch: str, **values: object) -> tuple[Settings, Findings]:
    found = Findings()
    s = Settings(image="b.img", **values)  # type: ignore[arg-type]
    return check_bootloader(s, arch, "image", found), found


@pytest.mark.parametrize("arch", ["armhf", "armel", "riscv64"])
def test_a_board_image_gets_no_bootloader_and_says_so_once(arch: str) -> None:
    s, found = bootloader_of(arch)
    assert s.bootloader == "none" and found.problems == []
    (note,) = found.notes
    assert f"--image for {arch}: no bootloader is installed" in note
    assert "u-boot or flash-kernel" in note


@pytest.mark.parametrize(("option", "values"), [("--grub", {"grub": True}),
                                                ("--extlinux", {"extlinux": True})])
def test_naming_a_bios_bootloader_on_a_board_is_an_error(option: str,
                                                         values: dict[str, bool]) -> None:
    _, found = bootloader_of("armhf", **values)
    (problem,) = found.problems
    assert problem.startswith(f"{option}: vmdebootstrap installs no BIOS bootloader on armhf")


@pytest.mark.parametrize(("arch", "values"), [
    ("amd64", {}), ("i386", {"extlinux": True}), ("armhf", {"use_uefi": True}),
])
def test_bootloader_kept_where_we_install_one(arch: str, values: dict[str, bool]) -> None:
    s, found = bootloader_of(arch, **values)
    assert s.bootloader == ("extlinux" if values.get("extlinux") else "grub")
    assert found.notes == found.problems == []


def test_a_board_image_plans_without_bootloader_packages(host: Host) -> None:
    arm64_host = dataclasses.replace(host, arch="arm64")  # armhf runs natively there
    plan = make_plan(parse("--image", "b.img", "--size", "3G", "--arch", "armhf"), arm64_host)
    assert plan.image is not None and plan.image.disk.bootloader == "none"
    assert not [p for p in plan.packages if p.startswith(("grub", "extlinux"))]
    assert any(n.startswith("--image for armhf: no bootloader") for n in plan.notes)


def test_kernel_append_reaches_the_image_spec() -> None:
    s = Settings(size=3 * G, kernel_append="quiet  vmdbt.x=1")
    spec = image_spec_of(s, "amd64", "image")
    assert spec is not None and spec.kernel_append == ("quiet", "vmdbt.x=1")
    assert disk_problems(s) == []


def test_kernel_append_that_cannot_go_on_a_command_line() -> None:
    found = disk_problems(Settings(size=3 * G, kernel_append='quiet a="b c"'))
    assert found[0].startswith("--kernel-append: kernel parameter 'a=\"b' must be one word")
