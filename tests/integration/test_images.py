"""Real disk images: built with the command, checked statically, then booted.

Each case builds bookworm with a user and sudo and a serial console, then
checks the image without booting it (the partition table against the golden
layout the unit tests also check, parted's flags, each partition's filesystem,
fstab, the bootloader's files) and boots it under QEMU (TCG: nested KVM
hangs guests) until it logs in and runs a command with sudo.

The disk options of each case are in tests/unit/golden/cases.json.  Until
plan.py adds the bootloader's packages itself, they are given with --package.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, elf_machine, vmdebootstrap
from vmdebootstrap.boot.boottest import boot_test
from vmdebootstrap.cli import parse
from vmdebootstrap.host.run import SubprocessRunner
from vmdebootstrap.outputs import partitions as disk

GOLDEN = ROOT / "tests/unit/golden"
CASES = json.loads((GOLDEN / "cases.json").read_text())
COMMON = ("--no-default-configs", "--distribution", "bookworm", "--user", "user/live",
          "--sudo", "--serial-console", "--debootstrapopts", "variant=minbase", "--verbose")
BOOT_TIMEOUT = 900
EM_ARM = 40
MiB = 1024**2


@dataclass(frozen=True)
class Case:
    name: str
    packages: tuple[str, ...]
    firmware: str | None  # None: not booted
    flags: dict[int, set[str]]  # partition number -> flags parted must show
    suffix: str = ".img"
    extra: tuple[str, ...] = ()

    @property
    def arch(self) -> str:
        return str(CASES[self.name]["arch"])

    @property
    def disk_args(self) -> tuple[str, ...]:
        return tuple(CASES[self.name]["args"])


IMAGE_CASES = [
    Case("bios-ext4", ("grub-pc",), "bios", {1: {"boot"}}),
    Case("uefi", ("grub-efi-amd64", "dosfstools"), "uefi", {1: {"boot", "esp"}, 2: set()}),
    Case("boot-ext3-btrfs-qcow2", ("grub-pc", "btrfs-progs"), "bios", {1: {"boot"}, 2: set()},
         suffix=".qcow2"),
    Case("extlinux-ext3-sparse", ("extlinux", "syslinux-common"), "bios", {1: {"boot"}}),
    # Static checks only; under qemu-user a kernel's initramfs alone takes some
    # twenty minutes here, so this board-style image (no bootloader: a hook
    # would add u-boot) is built without a kernel.
    Case("armhf-lba-vfat-boot", ("dosfstools",), None, {1: {"boot", "lba"}, 2: set()},
         extra=("--no-kernel",)),
]


def layout_of(case: Case) -> disk.Layout:
    settings = parse(["--image", "x.img", *case.disk_args, "--no-default-configs"])[0]
    return disk.compute_layout(disk.DiskSpec.from_settings(settings, case.arch))


def run(*argv: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True,
                          env=env).stdout


def parted_flags(image: Path) -> dict[int, set[str]]:
    flags = {}
    for line in run("parted", "-m", "-s", str(image), "unit", "s", "print").splitlines():
        fields = line.rstrip(";").split(":")
        if fields[0].isdigit():
            flags[int(fields[0])] = {f.strip() for f in fields[6].split(",") if f.strip()}
    return flags


@contextlib.contextmanager
def attached(image: Path, count: int) -> Iterator[list[str]]:
    with disk.loop_attached(SubprocessRunner(), image, count) as loop:
        yield loop.nodes


@contextlib.contextmanager
def mounted_ro(device: str, where: Path) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    fstype = run("blkid", "-p", "-o", "value", "-s", "TYPE", device).strip()
    options = "ro,noload" if fstype in ("ext3", "ext4") else "ro"
    run("mount", "-o", options, device, str(where))
    try:
        yield where
    finally:
        run("umount", str(where))


def blkid(device: str, tag: str) -> str:
    return run("blkid", "-p", "-o", "value", "-s", tag, device).strip()


def fat_files(device: str, path: str) -> set[str]:
    """File names in a directory of a FAT filesystem, read with mtools (no mount:
    the test host's kernel may have no FAT driver)."""
    out = run("mdir", "-b", "-i", device, f"::{path}", env={**os.environ,
                                                              "MTOOLS_SKIP_CHECK": "1"})
    return {line.rstrip("/").rsplit("/", 1)[-1] for line in out.splitlines() if line.strip()}


def raw_copy(image: Path, tmp: Path) -> Path:
    if image.suffix != ".qcow2":
        return image
    raw = tmp / "converted.raw"
    run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(image), str(raw))
    return raw


def check_statically(case: Case, image: Path, tmp: Path) -> None:
    layout = layout_of(case)
    raw = raw_copy(image, tmp)
    if case.suffix == ".qcow2":
        assert image.read_bytes()[:4] == b"QFI\xfb", "not a qcow2 file"
    else:
        assert image.stat().st_size == int(parse(
            ["--image", "x", *case.disk_args, "--no-default-configs"])[0].size)
    # the partition table is the golden layout, and what the unit tests compute
    table = json.loads(run("sfdisk", "--json", str(raw)))
    golden = json.loads((GOLDEN / f"{case.name}.json").read_text())
    assert disk.mask_sfdisk_json(table) == golden
    assert disk.expected_sfdisk_json(layout) == golden
    flags = parted_flags(raw)
    for number, wanted in case.flags.items():
        assert wanted <= flags[number], f"partition {number}: {flags[number]}"
        if not wanted:
            assert not flags[number] & {"boot", "esp", "lba"}, flags[number]

    with attached(raw, len(layout.partitions)) as nodes:
        node = {p.role: nodes[p.number - 1] for p in layout.partitions}
        for p in layout.partitions:
            if p.fstype:
                assert blkid(node[p.role], "TYPE") == p.fstype, p
        uuids = {r: blkid(n, "UUID") for r, n in node.items() if r != "bios_grub"}
        with mounted_ro(node["root"], tmp / "root") as root:
            check_root(case, layout, root, uuids)
            boot_dir = root / "boot"
            if "boot" in node and layout.get("boot").fstype != "vfat":  # type: ignore[union-attr]
                with mounted_ro(node["boot"], tmp / "boot") as boot_dir:
                    check_boot(case, boot_dir, uuids, raw)
            elif "boot" not in node:
                check_boot(case, boot_dir, uuids, raw)
        if "esp" in node:
            assert "BOOTX64.EFI" in fat_files(node["esp"], "/EFI/BOOT")
            assert "grubx64.efi" in fat_files(node["esp"], "/EFI/debian")


def check_root(case: Case, layout: disk.Layout, root: Path, uuids: dict[str, str]) -> None:
    fstab = (root / "etc/fstab").read_text()
    lines = [line.split() for line in fstab.splitlines() if line and not line.startswith("#")]
    entries = {words[1]: words for words in lines}
    root_fs = str(layout.get("root").fstype)  # type: ignore[union-attr]
    assert entries["/"][:3] == [f"UUID={uuids['root']}", "/", root_fs]
    if root_fs.startswith("ext"):
        assert entries["/"][3] == "errors=remount-ro"
    if "boot" in uuids:
        assert entries["/boot"][:3] == [f"UUID={uuids['boot']}", "/boot",
                                        layout.get("boot").fstype]  # type: ignore[union-attr]
    if "esp" in uuids:
        assert entries["/boot/efi"][:4] == [f"UUID={uuids['esp']}", "/boot/efi", "vfat",
                                            "umask=0077"]
    assert len(lines) == len(uuids)
    # the build's helpers and mount points are all gone again
    assert not (root / "dev/disk").exists()
    assert not list((root / "dev").glob("loop*"))
    assert not list(root.glob(".*.vmdebootstrap"))
    if case.arch == "armhf":
        assert elf_machine((root / "usr/bin/dpkg").read_bytes()[:64]) == EM_ARM


def check_boot(case: Case, boot: Path, uuids: dict[str, str], raw: Path) -> None:
    """/boot (its own filesystem or the root's directory)."""
    mbr = raw.open("rb").read(512)
    assert mbr[510:] == b"\x55\xaa"
    if case.name.startswith("extlinux"):
        conf = (boot / "extlinux/extlinux.conf").read_text()
        assert f"root=UUID={uuids['root']} " in conf
        assert "console=ttyS0,115200n8" in conf and "SERIAL 0 115200" in conf
        assert (boot / "extlinux/ldlinux.sys").is_file()
        assert mbr[:440] == Path("/usr/lib/EXTLINUX/mbr.bin").read_bytes()[:440]
        return
    if case.firmware is None:
        return
    cfg = (boot / "grub/grub.cfg").read_text()
    assert f"root=UUID={uuids['root']} " in cfg
    assert "console=ttyS0,115200n8" in cfg and "terminal_output console serial" in cfg
    if case.firmware == "bios":
        assert (boot / "grub/i386-pc/core.img").is_file()
        assert b"GRUB" in mbr[:440]
    else:
        assert (boot / "grub/x86_64-efi").is_dir()


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda c: c.name)
def test_image(case: Case, tmp_path: Path) -> None:
    image = tmp_path / f"{case.name}{case.suffix}"
    packages = [a for p in case.packages for a in ("--package", p)]
    arch = ("--arch", case.arch) if case.arch != "amd64" else ()
    built = vmdebootstrap(*COMMON, *arch, "--image", str(image), *case.disk_args, *packages,
                          *case.extra, "--log", str(tmp_path / "build.log"), timeout=3600)
    assert built.returncode == 0, built.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([image.name, "build.log"])
    if "--sparse" not in case.disk_args and case.suffix != ".qcow2":
        # free space was discarded: the file holds little more than the data
        assert image.stat().st_blocks * 512 < 0.5 * image.stat().st_size

    check_statically(case, image, tmp_path)
    if case.firmware is None:
        print(f"TIMING {case.name}: build {built.seconds:.0f} s (not booted)")
        return
    started = time.monotonic()
    report = boot_test(image, firmware=case.firmware, arch=case.arch, user="user",
                       password="live", command=None, timeout=BOOT_TIMEOUT, accel="tcg")
    took = time.monotonic() - started
    print(f"TIMING {case.name}: build {built.seconds:.0f} s, boot {took:.0f} s "
          f"(login after {report.seconds_to_login or 0:.0f} s)")
    assert report.ok, f"{report.error}\n{report.console_tail}"
    assert "sudo-ok" in report.command_output


# --- failures ----------------------------------------------------------------------------


def test_full_image_says_to_raise_size(tmp_path: Path) -> None:
    """700M passes the plan's estimate, but not with a second kernel flavour."""
    image = tmp_path / "small.img"
    run_ = vmdebootstrap(*COMMON, "--image", str(image), "--size", "700M", "--grub",
                         "--package", "grub-pc", "--package", "linux-image-rt-amd64")
    assert run_.returncode == 1, run_.stderr[-3000:]
    assert "ran out of space" in run_.stderr
    assert "raise --size (now 667 MiB)" in run_.stderr
    assert "Traceback" not in run_.stderr
    assert list(tmp_path.iterdir()) == []  # no image, no staged file
    # host_unchanged (conftest) checks that no loop device or mount is left


def test_full_boot_partition_says_to_raise_bootsize(tmp_path: Path) -> None:
    image = tmp_path / "small-boot.img"
    run_ = vmdebootstrap(*COMMON, "--image", str(image), "--size", "2G", "--grub",
                         "--bootsize", "24M", "--package", "grub-pc")
    assert run_.returncode == 1, run_.stderr[-3000:]
    assert "ran out of space" in run_.stderr and "/boot has" in run_.stderr
    assert "--bootsize (now 23 MiB)" in run_.stderr
    assert list(tmp_path.iterdir()) == []


def test_keep_on_failure_keeps_the_image(tmp_path: Path) -> None:
    image = tmp_path / "kept.img"
    hook = tmp_path / "fail-hook.sh"
    hook.write_text("#!/bin/sh\nexit 3\n")
    hook.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    run_ = vmdebootstrap(*COMMON, "--image", str(image), "--size", "2G", "--grub",
                         "--package", "grub-pc", "--customize", str(hook),
                         "--keep-on-failure", env={"TMPDIR": str(work)})
    assert run_.returncode == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fail-hook.sh", "kept.img.failed",
                                                          "work"]
    table = json.loads(run("sfdisk", "--json", str(tmp_path / "kept.img.failed")))
    assert table["partitiontable"]["partitions"][0]["bootable"] is True
    # The work directory is kept too, unmounted, and the build says where.
    (kept,) = work.iterdir()
    assert f"its work directory is kept in {kept}" in run_.stdout + run_.stderr
    assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if str(kept) in line]
    shutil.rmtree(kept)


def test_interrupt_undoes_everything(tmp_path: Path) -> None:
    """SIGINT while the image is attached and mounted: exit 130, nothing left."""
    image = tmp_path / "interrupted.img"
    log = tmp_path / "build.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmdebootstrap", *COMMON, "--image", str(image), "--size", "2G",
         "--grub", "--package", "grub-pc", "--log", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and "Bootstrapping" in log.read_text():
                break
            time.sleep(0.2)
        time.sleep(1)  # the root is mounted before "Bootstrapping" is logged
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build.log"]
