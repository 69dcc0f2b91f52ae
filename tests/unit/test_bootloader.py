"""fstab, kernel command line, grub and extlinux configuration, without root."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import RecordingRunner
from vmdebootstrap.errors import BuildError
from vmdebootstrap.host.run import CommandError, Result
from vmdebootstrap.outputs import bootloaders as bl
from vmdebootstrap.outputs import image
from vmdebootstrap.outputs import partitions as disk
from vmdebootstrap.plan import Plan

U = "0b5e3a6c-1111-4222-8333-444455556666"


# --- packages ---------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (("amd64", "grub", False, "ext4"), ["grub-pc", "e2fsprogs"]),
    (("i386", "grub", False, "ext3"), ["grub-pc", "e2fsprogs"]),
    (("amd64", "grub", True, "ext4"), ["grub-efi-amd64", "e2fsprogs", "dosfstools"]),
    (("i386", "grub", True, "ext4"), ["grub-efi-ia32", "e2fsprogs", "dosfstools"]),
    (("arm64", "grub", True, "btrfs"), ["grub-efi-arm64", "btrfs-progs", "dosfstools"]),
    (("armhf", "grub", True, "xfs"), ["grub-efi-arm", "xfsprogs", "dosfstools"]),
    (("amd64", "extlinux", False, "ext3"), ["extlinux", "syslinux-common", "e2fsprogs"]),
    (("armhf", "none", False, "ext4"), ["e2fsprogs"]),
    (("amd64", "grub", False, "btrfs"), ["grub-pc", "btrfs-progs"]),
])
def test_bootloader_packages(args: tuple[str, str, bool, str], expected: list[str]) -> None:
    assert bl.bootloader_packages(*args) == expected


def test_bootloader_packages_for_boot_filesystem() -> None:
    assert bl.bootloader_packages("armhf", "none", False, "ext4", boottype="vfat") == [
        "e2fsprogs", "dosfstools"]
    assert bl.bootloader_packages("amd64", "grub", False, "btrfs", boottype="ext3") == [
        "grub-pc", "btrfs-progs", "e2fsprogs"]
    with pytest.raises(ValueError):
        bl.bootloader_packages("s390x", "grub", True, "ext4")


# --- fstab ----------------------------------------------------------------------------


def test_fstab_every_partition() -> None:
    entries = [bl.FstabEntry("SWAP-U", "none", "swap"), bl.FstabEntry("ESP-U", "/boot/efi", "vfat"),
               bl.FstabEntry("BOOT-U", "/boot", "ext2"), bl.FstabEntry("ROOT-U", "/", "ext4")]
    assert bl.fstab_text(entries) == bl.FSTAB_HEADER + (
        "UUID=ROOT-U / ext4 errors=remount-ro 0 1\n"
        "UUID=BOOT-U /boot ext2 defaults 0 2\n"
        "UUID=ESP-U /boot/efi vfat umask=0077 0 2\n"
        "UUID=SWAP-U none swap sw 0 0\n")


@pytest.mark.parametrize(("fstype", "line"), [
    ("ext2", "UUID=R / ext2 errors=remount-ro 0 1"),
    ("ext3", "UUID=R / ext3 errors=remount-ro 0 1"),
    ("btrfs", "UUID=R / btrfs defaults 0 0"),
    ("xfs", "UUID=R / xfs defaults 0 0"),
])
def test_fstab_root_options(fstype: str, line: str) -> None:
    assert bl.fstab_line(bl.FstabEntry("R", "/", fstype)) == line


def test_fstab_vfat_boot_and_btrfs_boot() -> None:
    assert bl.fstab_line(bl.FstabEntry("B", "/boot", "vfat")) == "UUID=B /boot vfat defaults 0 2"
    assert bl.fstab_line(bl.FstabEntry("B", "/boot", "btrfs")) == "UUID=B /boot btrfs defaults 0 0"


def test_fstab_keeps_other_entries_and_drops_the_placeholder() -> None:
    existing = ("# UNCONFIGURED FSTAB FOR BASE SYSTEM\n"
                "/dev/sda1 / ext4 defaults 0 1\n"
                "/swapfile none swap sw 0 0\n"
                "tmpfs /tmp tmpfs defaults 0 0\n\n")
    text = bl.fstab_text([bl.FstabEntry("R", "/", "ext4")], existing)
    assert "UNCONFIGURED" not in text and "/dev/sda1" not in text
    assert text.endswith("# kept from the image\n/swapfile none swap sw 0 0\n"
                         "tmpfs /tmp tmpfs defaults 0 0\n")
    with_swap = bl.fstab_text([bl.FstabEntry("R", "/", "ext4"), bl.FstabEntry("S", "none",
                                                                             "swap")], existing)
    assert "/swapfile" not in with_swap


# --- kernel command line and grub defaults ------------------------------------------------


def test_kernel_cmdline() -> None:
    assert bl.kernel_cmdline(None, False) == []
    assert bl.kernel_cmdline("ttyS0", False) == ["console=tty0", "console=ttyS0,115200n8"]
    assert bl.kernel_cmdline("ttyAMA0", True) == ["console=tty0", "console=ttyAMA0,115200n8",
                                                  "net.ifnames=0"]
    assert bl.kernel_cmdline(None, True) == ["net.ifnames=0"]


def test_grub_default_serial_and_ifnames() -> None:
    cmdline = bl.kernel_cmdline("ttyS0", True)
    assert bl.grub_default_text(cmdline, "ttyS0") == (
        "# Written by vmdebootstrap; update-grub reads it after /etc/default/grub.\n"
        'GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX:+$GRUB_CMDLINE_LINUX }'
        'console=tty0 console=ttyS0,115200n8 net.ifnames=0"\n'
        'GRUB_TERMINAL="console serial"\n'
        'GRUB_SERIAL_COMMAND="serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1"\n'
        "GRUB_DISABLE_OS_PROBER=true\n")


def test_grub_default_plain() -> None:
    assert bl.grub_default_text([], None) == (
        "# Written by vmdebootstrap; update-grub reads it after /etc/default/grub.\n"
        "GRUB_DISABLE_OS_PROBER=true\n")


def test_grub_default_other_serial_ports() -> None:
    assert "--unit=1 " in bl.grub_default_text(bl.kernel_cmdline("ttyS1", False), "ttyS1")
    arm = bl.grub_default_text(bl.kernel_cmdline("ttyAMA0", False), "ttyAMA0")
    assert 'GRUB_SERIAL_COMMAND="serial --speed=115200"' in arm
    assert "console=ttyAMA0,115200n8" in arm


def test_grub_default_file_is_shell_that_extends_the_command_line(tmp_path: Path) -> None:
    import subprocess

    cfg = tmp_path / "vmdebootstrap.cfg"
    cfg.write_text(bl.grub_default_text(bl.kernel_cmdline("ttyS0", True), "ttyS0"))
    out = subprocess.run(["sh", "-c", f'GRUB_CMDLINE_LINUX="quiet"; . {cfg}; '
                          'echo "$GRUB_CMDLINE_LINUX"; GRUB_CMDLINE_LINUX=; . ' + str(cfg)
                          + '; echo "$GRUB_CMDLINE_LINUX"'],
                         capture_output=True, text=True, check=True).stdout
    assert out == ("quiet console=tty0 console=ttyS0,115200n8 net.ifnames=0\n"
                   "console=tty0 console=ttyS0,115200n8 net.ifnames=0\n")


# --- grub-install -----------------------------------------------------------------------


def test_grub_install_bios() -> None:
    assert bl.grub_install_argvs("amd64", False, "/dev/loop3") == [
        ["grub-install", "--target=i386-pc", "--boot-directory=/boot", "/dev/loop3"]]


@pytest.mark.parametrize(("arch", "target"), [("amd64", "x86_64-efi"), ("i386", "i386-efi"),
                                              ("arm64", "arm64-efi"), ("armhf", "arm-efi")])
def test_grub_install_uefi_normal_and_removable(arch: str, target: str) -> None:
    common = ["grub-install", f"--target={target}", "--efi-directory=/boot/efi",
              "--boot-directory=/boot", "--no-nvram"]
    unsigned = [*common, "--no-uefi-secure-boot"]
    assert bl.grub_install_argvs(arch, True, "/dev/loop3") == [
        [*unsigned, "--bootloader-id=debian"], [*unsigned, "--removable"]]
    signed = [*common, "--uefi-secure-boot"]
    assert bl.grub_install_argvs(arch, True, "/dev/loop3", secure_boot=True) == [
        [*signed, "--bootloader-id=debian"], [*signed, "--removable"]]


def fake_root(tmp_path: Path, *grub_targets: str) -> Path:
    root = tmp_path / "root"
    for t in grub_targets:
        (root / "usr/lib/grub" / t).mkdir(parents=True)
    (root / "dev").mkdir(parents=True, exist_ok=True)
    (root / "dev/null").touch()  # chroot_mounts makes no device nodes then
    (root / "etc").mkdir(exist_ok=True)
    return root


def test_install_grub_uefi_runs_in_the_chroot(tmp_path: Path) -> None:
    root = fake_root(tmp_path, "x86_64-efi")
    runner = RecordingRunner()
    bl.install_grub(runner, root, arch="amd64", use_uefi=True, disk="/dev/loop0",
                    default_text="X=1\n")
    assert (root / "etc/default/grub.d/vmdebootstrap.cfg").read_text() == "X=1\n"
    chroot = ["chroot", str(root)]
    assert runner.calls == [
        [*chroot, "debconf-set-selections"],
        *[[*chroot, *a] for a in bl.grub_install_argvs("amd64", True, "/dev/loop0")],
        [*chroot, "grub-mkconfig", "-o", "/boot/grub/grub.cfg"],
    ]
    assert runner.inputs[0] == b"grub-efi-amd64 grub2/force_efi_extra_removable boolean true\n"


def test_install_grub_without_grub_in_the_image(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    with pytest.raises(BuildError, match="add the package grub-pc"):
        bl.install_grub(RecordingRunner(), root, arch="amd64", use_uefi=False,
                        disk="/dev/loop0", default_text="")
    with pytest.raises(BuildError, match="grub-efi-arm64"):
        bl.install_grub(RecordingRunner(), root, arch="arm64", use_uefi=True,
                        disk="/dev/loop0", default_text="")


def test_devices_in_chroot_binds_only_the_image_devices(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    runner = RecordingRunner()
    devices = bl.Devices("/dev/loop5", ("/dev/loop5p1", "/dev/loop5p2"),
                         {"/dev/loop5p1": "AAAA-BBBB", "/dev/loop5p2": U})
    dev = root / "dev"
    with bl.devices_in_chroot(runner, root, devices):
        assert {p.name for p in dev.iterdir()} == {"null", "loop5", "loop5p1", "loop5p2", "disk"}
        assert os.readlink(dev / "disk/by-uuid" / U) == "../../loop5p2"
        assert os.readlink(dev / "disk/by-uuid/AAAA-BBBB") == "../../loop5p1"
    assert runner.calls == [
        ["mount", "--bind", "/dev/loop5", str(dev / "loop5")],
        ["mount", "--bind", "/dev/loop5p1", str(dev / "loop5p1")],
        ["mount", "--bind", "/dev/loop5p2", str(dev / "loop5p2")],
        ["umount", str(dev / "loop5p2")],
        ["umount", str(dev / "loop5p1")],
        ["umount", str(dev / "loop5")],
    ]
    assert [p.name for p in dev.iterdir()] == ["null"]


def test_devices_in_chroot_cleans_up_on_failure(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    runner = RecordingRunner()
    with pytest.raises(BuildError), bl.devices_in_chroot(
            runner, root, bl.Devices("/dev/loop5", ("/dev/loop5p1",), {"/dev/loop5p1": U})):
        raise BuildError("grub-install failed")
    assert [p.name for p in (root / "dev").iterdir()] == ["null"]
    assert runner.calls[-1][0] == "umount"


# --- extlinux -------------------------------------------------------------------------------


def test_find_kernels_newest_first(tmp_path: Path) -> None:
    for name in ("vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64", "initrd.img-6.1.0-10-amd64",
                 "config-6.1.0-10-amd64", "System.map-6.1.0-10-amd64"):
        (tmp_path / name).touch()
    assert bl.find_kernels(tmp_path, "/boot") == [
        bl.Kernel("6.1.0-10-amd64", "/boot/vmlinuz-6.1.0-10-amd64",
                  "/boot/initrd.img-6.1.0-10-amd64"),
        bl.Kernel("6.1.0-9-amd64", "/boot/vmlinuz-6.1.0-9-amd64", None),
    ]
    assert bl.find_kernels(tmp_path, "")[0].kernel == "/vmlinuz-6.1.0-10-amd64"


def test_extlinux_conf() -> None:
    kernels = [bl.Kernel("6.1.0-10-amd64", "/boot/vmlinuz-6.1.0-10-amd64",
                         "/boot/initrd.img-6.1.0-10-amd64"),
               bl.Kernel("6.1.0-9-amd64", "/boot/vmlinuz-6.1.0-9-amd64", None)]
    text = bl.extlinux_conf_text(kernels, U, bl.kernel_cmdline("ttyS0", True), "ttyS0")
    assert text == (
        "# Written by vmdebootstrap.  Kernel upgrades do not change this file:\n"
        "# add an entry for a new kernel here.\n"
        "SERIAL 0 115200\n"
        "DEFAULT linux-6.1.0-10-amd64\n"
        "PROMPT 0\n"
        "TIMEOUT 10\n"
        "\n"
        "LABEL linux-6.1.0-10-amd64\n"
        "  MENU LABEL Debian GNU/Linux, kernel 6.1.0-10-amd64\n"
        "  LINUX /boot/vmlinuz-6.1.0-10-amd64\n"
        "  INITRD /boot/initrd.img-6.1.0-10-amd64\n"
        f"  APPEND root=UUID={U} ro quiet console=tty0 console=ttyS0,115200n8 net.ifnames=0\n"
        "\n"
        "LABEL linux-6.1.0-9-amd64\n"
        "  MENU LABEL Debian GNU/Linux, kernel 6.1.0-9-amd64\n"
        "  LINUX /boot/vmlinuz-6.1.0-9-amd64\n"
        f"  APPEND root=UUID={U} ro quiet console=tty0 console=ttyS0,115200n8 net.ifnames=0\n")


def test_extlinux_conf_without_serial_or_kernel() -> None:
    text = bl.extlinux_conf_text([bl.Kernel("6", "/vmlinuz-6", "/initrd.img-6")], U, [], None)
    assert "SERIAL" not in text and f"APPEND root=UUID={U} ro quiet\n" in text
    with pytest.raises(BuildError, match="no kernel"):
        bl.extlinux_conf_text([], U, [], None)


def test_install_extlinux(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    runner = RecordingRunner()
    with pytest.raises(BuildError, match="extlinux is not installed"):
        bl.install_extlinux(runner, root, "CONF\n")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/extlinux").touch()
    bl.install_extlinux(runner, root, "CONF\n")
    assert runner.calls == [["chroot", str(root), "extlinux", "--install", "/boot/extlinux"]]
    assert (root / "boot/extlinux/extlinux.conf").read_text() == "CONF\n"


def test_mbr_blob_from_the_image_then_the_host(tmp_path: Path) -> None:
    root, host = tmp_path / "root", tmp_path / "host"
    (host / "usr/lib/syslinux/mbr").mkdir(parents=True)
    (host / "usr/lib/syslinux/mbr/gptmbr.bin").write_bytes(b"g")
    (root / "usr/lib/EXTLINUX").mkdir(parents=True)
    (root / "usr/lib/EXTLINUX/mbr.bin").write_bytes(b"m")
    assert bl.mbr_blob(root, "dos", host) == root / "usr/lib/EXTLINUX/mbr.bin"
    assert bl.mbr_blob(root, "gpt", host) == host / "usr/lib/syslinux/mbr/gptmbr.bin"
    with pytest.raises(BuildError, match="syslinux-common"):
        bl.mbr_blob(root, "gpt", tmp_path / "nothing")


def test_write_mbr_keeps_the_partition_table(tmp_path: Path) -> None:
    disk_file = tmp_path / "disk"
    original = bytes(range(256)) * 4
    disk_file.write_bytes(original)
    blob = tmp_path / "mbr.bin"
    blob.write_bytes(b"\xfa" * 512)
    bl.write_mbr(blob, str(disk_file))
    data = disk_file.read_bytes()
    assert data[:440] == b"\xfa" * 440
    assert data[440:] == original[440:]


# --- install_bootloader, with a fake target ----------------------------------------------


class FakeBlkid(RecordingRunner):
    """blkid answers with a UUID per device; fstrim can be made to fail."""

    def __init__(self, fstrim_fails: bool = False) -> None:
        super().__init__()
        self.fstrim_fails = fstrim_fails

    def run(self, argv: Any, **kw: Any) -> Result:
        result = super().run(argv, **kw)
        args = [str(a) for a in argv]
        if args[0] == "blkid":
            return Result(0, f"UUID-{Path(args[-1]).name}\n")
        if args[0] == "fstrim" and self.fstrim_fails:
            return Result(1, "", ["fstrim: the discard operation is not supported"])
        return result


def fake_target(plan: Plan, tmp_path: Path) -> image.ImageTarget:
    layout = disk.compute_layout(image.disk_spec(plan))
    root = fake_root(tmp_path, "i386-pc", "x86_64-efi")
    (root / "etc/fstab").write_text("# UNCONFIGURED FSTAB FOR BASE SYSTEM\n")
    (root / "boot").mkdir()
    (root / "boot/vmlinuz-6.1.0-10-amd64").touch()
    (root / "boot/initrd.img-6.1.0-10-amd64").touch()
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/extlinux").touch()
    (root / "usr/lib/EXTLINUX").mkdir(parents=True)
    (root / "usr/lib/EXTLINUX/mbr.bin").write_bytes(b"\x33" * 440)
    disk_file = tmp_path / "loop0"
    disk_file.write_bytes(b"\0" * 1024)
    mounts = {"root": root}
    if layout.get("boot"):
        mounts["boot"] = root / "boot"
    return image.ImageTarget(image=tmp_path / "img", loop=str(disk_file), root=root,
                             partitions={p.role: f"/dev/loop0p{p.number}"
                                         for p in layout.partitions},
                             layout=layout, work=tmp_path, mounts=mounts)


@pytest.fixture
def image_plan(plan_of: Callable[..., Plan], out: Path) -> Callable[..., Plan]:
    def make(*extra: str) -> Plan:
        return plan_of("--image", str(out / "disk.img"), "--size", "3G", *extra)
    return make


def chrooted(runner: RecordingRunner) -> list[list[str]]:
    return [c[2:] for c in runner.calls if c[0] == "chroot"]


def test_install_bootloader_grub_bios(image_plan: Callable[..., Plan], tmp_path: Path) -> None:
    plan = image_plan("--serial-console", "--bootsize", "256M", "--swap", "300M")
    target = fake_target(plan, tmp_path)
    runner = FakeBlkid()
    image.install_bootloader(plan, runner, target)
    assert (target.root / "etc/fstab").read_text() == bl.FSTAB_HEADER + (
        "UUID=UUID-loop0p2 / ext4 errors=remount-ro 0 1\n"
        "UUID=UUID-loop0p1 /boot ext2 defaults 0 2\n"
        "UUID=UUID-loop0p3 none swap sw 0 0\n")
    assert chrooted(runner) == [
        ["grub-install", "--target=i386-pc", "--boot-directory=/boot", target.loop],
        ["grub-mkconfig", "-o", "/boot/grub/grub.cfg"]]
    grub_cfg = (target.root / "etc/default/grub.d/vmdebootstrap.cfg").read_text()
    assert "console=ttyS0,115200n8" in grub_cfg and "net.ifnames" not in grub_cfg
    assert ["fstrim", "--verbose", str(target.root / "boot")] in runner.calls
    assert runner.calls[-1] == ["fstrim", "--verbose", str(target.root)]
    # nothing of the chroot's extra devices is left behind (pts: chroot_mounts' mount point)
    assert sorted(p.name for p in (target.root / "dev").iterdir()) == ["null", "pts"]


def test_install_bootloader_ifnames_and_sparse(image_plan: Callable[..., Plan],
                                               tmp_path: Path) -> None:
    plan = image_plan("--enable-dhcp", "--no-systemd-networkd", "--sparse")
    target = fake_target(plan, tmp_path)
    runner = FakeBlkid()
    image.install_bootloader(plan, runner, target)
    grub_cfg = (target.root / "etc/default/grub.d/vmdebootstrap.cfg").read_text()
    assert 'GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX:+$GRUB_CMDLINE_LINUX }net.ifnames=0"' \
        in grub_cfg
    assert "GRUB_TERMINAL" not in grub_cfg
    assert not [c for c in runner.calls if c[0] in ("fstrim", "dd")]


def test_install_bootloader_extlinux(image_plan: Callable[..., Plan], tmp_path: Path) -> None:
    plan = image_plan("--extlinux", "--roottype", "ext3", "--serial-console")
    target = fake_target(plan, tmp_path)
    runner = FakeBlkid(fstrim_fails=True)
    image.install_bootloader(plan, runner, target)
    assert chrooted(runner) == [["extlinux", "--install", "/boot/extlinux"]]
    conf = (target.root / "boot/extlinux/extlinux.conf").read_text()
    assert "LINUX /boot/vmlinuz-6.1.0-10-amd64" in conf
    assert "APPEND root=UUID=UUID-loop0p1 ro quiet console=tty0 console=ttyS0,115200n8" in conf
    assert Path(target.loop).read_bytes()[:440] == b"\x33" * 440
    # discard unsupported: free space is zeroed instead
    assert runner.calls[-1] == ["dd", "if=/dev/zero", f"of={target.root / image.ZERO_FILE}",
                                "bs=1M", "conv=fsync"]
    assert "UUID=UUID-loop0p1 / ext3 errors=remount-ro 0 1" in (
        target.root / "etc/fstab").read_text()


def test_install_bootloader_none_writes_only_fstab(image_plan: Callable[..., Plan],
                                                   tmp_path: Path) -> None:
    plan = image_plan("--no-grub", "--no-extlinux", "--sparse")
    target = fake_target(plan, tmp_path)
    runner = FakeBlkid()
    image.install_bootloader(plan, runner, target)
    assert [c[0] for c in runner.calls] == ["blkid"]
    assert not (target.root / "etc/default/grub.d").exists()


# --- mounting /boot after the bootstrap, FAT without kernel support ---------------------------


class NoVfat(RecordingRunner):
    def run(self, argv: Any, **kw: Any) -> Result:
        result = super().run(argv, **kw)
        args = [str(a) for a in argv]
        if args[0] == "mount" and "-t" not in args and len(args) == 3:
            raise CommandError(args, 32, [f"mount: {args[2]}: unknown filesystem type 'vfat'."])
        return result


def test_mount_pending_moves_boot_onto_its_partition(image_plan: Callable[..., Plan],
                                                     tmp_path: Path) -> None:
    plan = image_plan("--bootsize", "100M", "--boottype", "vfat", "--no-grub",
                      "--no-extlinux")
    target = fake_target(plan, tmp_path)
    target.mounts.pop("boot")
    target.pending.append("boot")
    runner = NoVfat()
    image.mount_pending(runner, target)
    boot = target.root / "boot"
    aside = target.root / ".boot.vmdebootstrap"
    assert runner.calls == [
        ["mount", "/dev/loop0p1", str(boot)],
        image.fat_stage_argv("/dev/loop0p1", boot),
        ["cp", "--archive", str(aside / "initrd.img-6.1.0-10-amd64"),
         str(aside / "vmlinuz-6.1.0-10-amd64"), str(boot)],
    ]
    assert not aside.exists() and boot.is_dir()
    assert target.pending == [] and target.fat_staged == ["boot"]
    assert target.mounts["boot"] == boot


def test_fat_partitions_written_with_mtools(image_plan: Callable[..., Plan],
                                            tmp_path: Path) -> None:
    plan = image_plan("--bootsize", "100M", "--boottype", "vfat", "--no-grub",
                      "--no-extlinux")
    target = fake_target(plan, tmp_path)
    target.fat_staged.append("boot")
    runner = FakeBlkid()
    image.install_bootloader(plan, runner, target)
    boot = target.root / "boot"
    assert ["mcopy", "-i", "/dev/loop0p1", "-s", "-p", "-m", "-n", "-Q",
            str(boot / "initrd.img-6.1.0-10-amd64"), str(boot / "vmlinuz-6.1.0-10-amd64"),
            "::/"] in runner.calls
    trimmed = [c[-1] for c in runner.calls if c[0] == "fstrim"]
    assert trimmed == [str(target.root)]  # never the staging tmpfs


def test_mount_pending_without_content_just_mounts(image_plan: Callable[..., Plan],
                                                   tmp_path: Path) -> None:
    plan = image_plan("--use-uefi")
    target = fake_target(plan, tmp_path)
    target.pending.append("esp")
    runner = RecordingRunner()
    image.mount_pending(runner, target)
    assert runner.calls == [["mount", "/dev/loop0p1", str(target.root / "boot/efi")]]
    assert target.fat_staged == []


def test_other_mount_failures_are_not_hidden(image_plan: Callable[..., Plan],
                                             tmp_path: Path) -> None:
    plan = image_plan("--bootsize", "100M")
    target = fake_target(plan, tmp_path)
    target.pending.append("boot")
    with pytest.raises(CommandError):
        image.mount_pending(NoVfat(), target)
