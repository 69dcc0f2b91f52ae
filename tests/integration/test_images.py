"""Real disk images: built with the command, checked statically, then booted.

Each case builds bookworm with a user and sudo and a serial console, then
checks the image without booting it (the partition table against the golden
layout the unit tests also check, parted's flags, each partition's filesystem,
fstab, the bootloader's files) and boots it under QEMU (TCG: nested KVM
hangs guests) until it logs in and runs a command with sudo.

The disk options of each case are in tests/unit/golden/cases.json.  No case
names a bootloader or filesystem package: the plan adds them.  Between them
the cases build every disk option for real: GPT with BIOS grub, xfs, swap,
--esp-size, --bootoffset, --mbr, an i386 root, a separate /boot, btrfs,
qcow2, and one build that boots itself (--boot-test) made with debootstrap,
a --custom-package and --kernel-append.

All images are built first, one after the other; then the bootable ones are
booted two at a time (QEMU's TCG needs a core each).
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import (
    ROOT,
    Run,
    dpkg_status,
    elf_machine,
    host_state,
    vmdebootstrap,
)
from vmdebootstrap.boot.boottest import BootReport, boot_test
from vmdebootstrap.boot.media import pe_signed
from vmdebootstrap.cli import parse
from vmdebootstrap.host.digest import file_sha256
from vmdebootstrap.host.run import SubprocessRunner
from vmdebootstrap.outputs import partitions as disk

GOLDEN = ROOT / "tests/unit/golden"
CASES = json.loads((GOLDEN / "cases.json").read_text())
COMMON = ("--no-default-configs", "--distribution", "bookworm", "--user", "user/live",
          "--sudo", "--serial-console", "--debootstrapopts", "variant=minbase", "--verbose")
BOOT_TIMEOUT = 900
EM_ARM, EM_386 = 40, 3
MiB = 1024**2
KERNEL_APPEND = "vmdbt.append=on"
CUSTOM = "vmdbt-custom"  # the --custom-package; it depends on less, which minbase lacks


@dataclass(frozen=True)
class Case:
    name: str
    firmware: str | None  # None: not booted
    flags: dict[int, set[str]]  # partition number -> flags parted must show
    suffix: str = ".img"
    extra: tuple[str, ...] = ()
    boots_itself: bool = False  # built with --boot-test: the build boots it
    custom_package: bool = False

    @property
    def arch(self) -> str:
        return str(CASES[self.name]["arch"])

    @property
    def disk_args(self) -> tuple[str, ...]:
        return tuple(CASES[self.name]["args"])


IMAGE_CASES = [
    Case("gpt-bios-xfs-swap", "bios", {1: {"bios_grub"}, 2: {"legacy_boot"}, 3: set()},
         extra=("--bootstrap-tool", "debootstrap", "--kernel-append", KERNEL_APPEND,
                "--boot-test"),
         boots_itself=True, custom_package=True),
    # Secure Boot is on by default: booted with it enforced, as on a stock PC.
    Case("uefi", "uefi-sb", {1: {"boot", "esp"}, 2: set()}),
    Case("boot-ext3-btrfs-qcow2", "bios", {1: {"boot"}, 2: set()}, suffix=".qcow2"),
    Case("i386-extlinux-mbr-offset", "bios", {1: {"boot"}}),
    # Static checks only; under qemu-user a kernel's initramfs alone takes some
    # twenty minutes here, so this board-style image (no bootloader: a hook
    # would add u-boot) is built without a kernel.
    Case("armhf-lba-vfat-boot", None, {1: {"boot", "lba"}, 2: set()}, extra=("--no-kernel",)),
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
            check_esp(case, node["esp"], tmp)


def check_esp(case: Case, esp: str, tmp: Path) -> None:
    """The removable path firmware starts, and Debian's own directory; with
    Secure Boot, shim (signed) first, the signed grub and MokManager beside it."""
    removable, debian = fat_files(esp, "/EFI/BOOT"), fat_files(esp, "/EFI/debian")
    assert "BOOTX64.EFI" in removable and "grubx64.efi" in debian
    run("mcopy", "-n", "-i", esp, "::/EFI/BOOT/BOOTX64.EFI", str(tmp / "loader.efi"),
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    signed = case.firmware == "uefi-sb"
    assert pe_signed((tmp / "loader.efi").read_bytes()[:4096]) == signed
    if signed:
        assert {"grubx64.efi", "mmx64.efi"} <= removable, removable
        assert {"shimx64.efi", "mmx64.efi"} <= debian, debian


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
    if "swap" in uuids:
        assert entries["none"][:3] == [f"UUID={uuids['swap']}", "none", "swap"]
    assert len(lines) == len(uuids)
    # the build's helpers and mount points are all gone again
    assert not (root / "dev/disk").exists()
    assert not list((root / "dev").glob("loop*"))
    assert not list(root.glob(".*.vmdebootstrap"))
    machine = {"armhf": EM_ARM, "i386": EM_386}.get(case.arch)
    if machine is not None:
        assert elf_machine((root / "usr/bin/dpkg").read_bytes()[:64]) == machine
    status = dpkg_status((root / "var/lib/dpkg/status").read_text())
    if case.custom_package:
        # installed through apt, so its dependency came from the mirror
        assert status[CUSTOM] == "install ok installed"
        assert status["less"] == "install ok installed"
        assert (root / f"usr/share/{CUSTOM}/marker").read_text() == "custom\n"
    # The plan added the bootloader and filesystem packages (no case names them).
    layout_fs = {p.fstype for p in layout.partitions}
    wanted = {"xfs": "xfsprogs", "btrfs": "btrfs-progs", "vfat": "dosfstools"}
    for fstype, package in wanted.items():
        if fstype in layout_fs:
            assert status[package] == "install ok installed", package


def check_boot(case: Case, boot: Path, uuids: dict[str, str], raw: Path) -> None:
    """/boot (its own filesystem or the root's directory)."""
    mbr = raw.open("rb").read(512)
    assert mbr[510:] == b"\x55\xaa"
    if "extlinux" in case.name:
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
    assert (KERNEL_APPEND in cfg) == (KERNEL_APPEND in case.extra)
    if case.firmware == "bios":
        assert (boot / "grub/i386-pc/core.img").is_file()
        assert b"GRUB" in mbr[:440]
    else:
        assert (boot / "grub/x86_64-efi").is_dir()


def make_custom_deb(where: Path) -> Path:
    tree = where / CUSTOM
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        f"Package: {CUSTOM}\nVersion: 1.0\nArchitecture: all\nDepends: less\n"
        "Maintainer: vmdebootstrap tests <tests@example.org>\n"
        "Description: a local package for --custom-package\n")
    (tree / f"usr/share/{CUSTOM}").mkdir(parents=True)
    (tree / f"usr/share/{CUSTOM}/marker").write_text("custom\n")
    deb = where / f"{CUSTOM}_1.0_all.deb"
    run("dpkg-deb", "--root-owner-group", "-b", str(tree), str(deb))
    return deb


@dataclass
class Built:
    case: Case
    image: Path
    log: Path
    run: Run
    boot: BootReport | None = None
    boot_seconds: float = 0.0


def selected_cases(session: pytest.Session) -> list[Case]:
    """The cases the run's tests ask for (all of them, unless -k narrows it)."""
    asked = [item.callspec.params.get("case") for item in session.items
             if isinstance(item, pytest.Function) and item.module is sys.modules[__name__]
             and hasattr(item, "callspec")]
    return [c for c in IMAGE_CASES if c in asked]


@pytest.fixture(scope="module")
def built(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    """Every selected case, built once, one after the other."""
    before = host_state()
    debs = tmp_path_factory.mktemp("debs")
    result = {}
    for case in selected_cases(request.session):
        out = tmp_path_factory.mktemp(case.name)
        image, log = out / f"{case.name}{case.suffix}", out / "build.log"
        arch = ("--arch", case.arch) if case.arch != "amd64" else ()
        custom = ("--custom-package", str(make_custom_deb(debs))) if case.custom_package else ()
        result[case.name] = Built(case, image, log, vmdebootstrap(
            *COMMON, *arch, "--image", str(image), *case.disk_args, *case.extra, *custom,
            "--log", str(log), timeout=3600))
    assert_nothing_left(before)
    return result


@pytest.fixture(scope="module")
def booted(built: dict[str, Built]) -> dict[str, Built]:
    """The bootable images that built, booted two at a time."""
    before = host_state()

    def boot(b: Built) -> None:
        started = time.monotonic()
        b.boot = boot_test(b.image, firmware=str(b.case.firmware), arch=b.case.arch,
                           user="user", password="live", command=None,
                           timeout=BOOT_TIMEOUT, accel="tcg")
        b.boot_seconds = time.monotonic() - started

    todo = [b for b in built.values() if b.case.firmware and not b.case.boots_itself
            and b.run.returncode == 0]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(boot, b) for b in todo]:
            future.result()
    assert_nothing_left(before)
    return built


def assert_nothing_left(before: dict[str, set[str]]) -> None:
    """What the function-scoped host_unchanged checks, for module fixtures."""
    after = host_state()
    leftovers = {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}
    assert not leftovers, f"left behind on the host: {leftovers}"


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda c: c.name)
def test_image_is_built_as_asked(case: Case, built: dict[str, Built]) -> None:
    b = built[case.name]
    assert b.run.returncode == 0, b.run.stderr[-3000:]
    sums = b.image.with_name(b.image.name + ".sha256")
    assert sorted(p.name for p in b.image.parent.iterdir()) == sorted(
        [b.image.name, sums.name, "build.log", f"{b.image.name}.manifest.json",
         f"{b.image.name}.spdx.json"])
    assert sums.read_text() == f"{file_sha256(b.image)}  {b.image.name}\n"
    if "--sparse" not in case.disk_args and case.suffix != ".qcow2":
        # free space was discarded: the file holds little more than the data
        assert b.image.stat().st_blocks * 512 < 0.5 * b.image.stat().st_size
    log = b.log.read_text()
    if "--bootstrap-tool" in case.extra:
        assert "debootstrap --arch=amd64" in log and "mmdebstrap --mode" not in log
    scratch = b.image.parent / "check"
    scratch.mkdir()
    try:
        check_statically(case, b.image, scratch)
    finally:
        shutil.rmtree(scratch)
    print(f"TIMING {case.name}: build {b.run.seconds:.0f} s")


@pytest.mark.parametrize("case", [c for c in IMAGE_CASES if c.firmware],
                         ids=lambda c: c.name)
def test_image_boots(case: Case, booted: dict[str, Built]) -> None:
    b = booted[case.name]
    assert b.run.returncode == 0, "the build failed: see test_image_is_built_as_asked"
    if case.boots_itself:
        # --boot-test: the build booted its own image under each firmware it
        # is made for, logged in and checked sudo, or it would have failed.
        lines = [line for line in b.log.read_text().splitlines() if "boot test " in line]
        assert [line.split("boot test ")[1].split(" ")[0] for line in lines] == ["bios"]
        assert lines[0].endswith(": OK") and "login after" in lines[0], lines
        return
    report = b.boot
    assert report is not None
    print(f"TIMING {case.name}: boot {b.boot_seconds:.0f} s "
          f"(login after {report.seconds_to_login or 0:.0f} s)")
    assert report.ok, f"{report.error}\n{report.console_tail}"
    assert "sudo-ok" in report.command_output
    assert report.secure_boot == ("enabled" if case.firmware == "uefi-sb" else None)


# --- failures ----------------------------------------------------------------------------


def test_full_image_says_to_raise_size(tmp_path: Path) -> None:
    """700M passes the plan's estimate, but not with a second kernel flavour."""
    image = tmp_path / "small.img"
    run_ = vmdebootstrap(*COMMON, "--image", str(image), "--size", "700M", "--grub",
                         "--package", "linux-image-rt-amd64")
    assert run_.returncode == 1, run_.stderr[-3000:]
    assert "ran out of space" in run_.stderr
    assert "raise --size (now 667 MiB)" in run_.stderr
    assert "Traceback" not in run_.stderr
    assert list(tmp_path.iterdir()) == []  # no image, no staged file
    # host_unchanged (conftest) checks that no loop device or mount is left


def test_full_boot_partition_says_to_raise_bootsize(tmp_path: Path) -> None:
    image = tmp_path / "small-boot.img"
    run_ = vmdebootstrap(*COMMON, "--image", str(image), "--size", "2G", "--grub",
                         "--bootsize", "24M")
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
                         "--customize", str(hook),
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
         "--grub", "--log", str(log)],
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
