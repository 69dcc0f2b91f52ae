"""Disk layouts, partition tables, loop devices and the image file, without root.

The golden files in golden/ are ``sfdisk --json`` of the images the
integration tests build (ids and UUIDs masked); the same files are compared
with the real images there, so the pure layout and the real table agree.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import RecordingRunner
from tests.unit.conftest import parse
from vmdebootstrap.errors import BuildError, Interrupted, UsageError
from vmdebootstrap.host.digest import file_sha256
from vmdebootstrap.host.run import CommandError, Result
from vmdebootstrap.outputs import image
from vmdebootstrap.outputs import partitions as disk
from vmdebootstrap.outputs.partitions import (
    GRAIN,
    DiskSpec,
    Layout,
    LayoutError,
    MiB,
    compute_layout,
)
from vmdebootstrap.plan import Plan

GOLDEN = Path(__file__).parent / "golden"
CASES: dict[str, dict[str, Any]] = json.loads((GOLDEN / "cases.json").read_text())
GiB = 1024**3


def spec_of(arch: str, *args: str) -> DiskSpec:
    return DiskSpec.from_settings(parse("--image", "/nonexistent/x.img", *args), arch)


def problems(spec: DiskSpec) -> list[str]:
    with pytest.raises(LayoutError) as info:
        compute_layout(spec)
    return info.value.problems


def one(found: list[str], *fragments: str) -> str:
    hits = [p for p in found if all(f in p for f in fragments)]
    assert len(hits) == 1, f"{fragments} not found once in {found}"
    return hits[0]


# --- golden layouts ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_layouts(name: str) -> None:
    case = CASES[name]
    layout = compute_layout(spec_of(case["arch"], *case["args"]))
    golden = json.loads((GOLDEN / f"{name}.json").read_text())
    assert disk.expected_sfdisk_json(layout) == golden


def test_every_golden_file_has_a_case() -> None:
    names = {p.stem for p in GOLDEN.glob("*.json")} - {"cases"}
    assert names == set(CASES)


# --- every combination --------------------------------------------------------------

BOOTLOADERS = ("grub", "extlinux", "none")
ARCHES = ("amd64", "i386", "armhf", "arm64")
FLAGS = ("boot", "lba", "esp", "legacy_boot")


def all_specs() -> list[DiskSpec]:
    specs = []
    for (bootloader, uefi, bootsize, boottype, swap, offset, part_type, flag,
         arch) in itertools.product(
            BOOTLOADERS, (False, True), (None, 128 * 10**6), ("ext2", "vfat"),
            (None, 256 * MiB), (None, 8192, 3 * 10**6), (None, "msdos", "gpt"), FLAGS,
            ARCHES):
        if boottype == "vfat" and bootsize is None:
            continue
        specs.append(DiskSpec(size=4 * 10**9, arch=arch, bootloader=bootloader,
                              use_uefi=uefi, bootsize=bootsize, boottype=boottype,
                              swap=swap, bootoffset=offset, bootflag=flag,
                              part_type=part_type))
    return specs


def test_every_combination_is_a_valid_layout_or_refused_by_option() -> None:
    built = refused = 0
    for spec in all_specs():
        try:
            layout = compute_layout(spec)
        except LayoutError as exc:
            refused += 1
            assert exc.problems
            assert all("--" in p for p in exc.problems), exc.problems
            continue
        built += 1
        check_layout(spec, layout)
    assert built > 1000 and refused > 1000


def check_layout(spec: DiskSpec, layout: Layout) -> None:
    parts = layout.partitions
    roles = [p.role for p in parts]
    assert [p.number for p in parts] == list(range(1, len(parts) + 1))
    assert roles[-1] == ("swap" if spec.swap else "root")
    assert len(parts) <= (4 if layout.label == "dos" else 128)
    # first partition: at 1 MiB, or the boot offset rounded up to whole MiB
    want_start = max(GRAIN, -(-(spec.bootoffset or 0) // MiB) * GRAIN)
    last_usable = layout.total_sectors - (34 if layout.label == "gpt" else 1)
    assert parts[0].start == want_start
    for p, nxt in itertools.pairwise(parts):
        assert p.start + p.size == nxt.start
    for p in parts:
        assert p.start % GRAIN == 0 and p.size % GRAIN == 0, p
        assert p.start + p.size - 1 <= last_usable
    sizes = {p.role: p.size * disk.SECTOR for p in parts}
    if spec.use_uefi:
        assert roles[0] == "esp" and sizes["esp"] >= spec.esp_size
        assert layout.label == "gpt" or spec.part_type == "msdos"
    else:
        assert "esp" not in roles
    if spec.bootsize:
        assert sizes["boot"] >= spec.bootsize
        assert layout.get("boot").fstype == spec.boottype  # type: ignore[union-attr]
    if spec.swap:
        assert sizes["swap"] >= spec.swap
    bios_grub = (layout.label == "gpt" and spec.bootloader == "grub" and not spec.use_uefi)
    assert ("bios_grub" in roles) == bios_grub
    if bios_grub:
        assert roles[0] == "bios_grub" and sizes["bios_grub"] == MiB
    first = next(p for p in parts if p.role != "bios_grub")
    if layout.label == "dos":
        assert [p.bootable for p in parts] == [p is first for p in parts]
        assert all(p.attrs is None and p.name is None for p in parts)
    else:
        assert not any(p.bootable for p in parts)
        with_attr = [p for p in parts if p.attrs]
        assert with_attr in ([], [first])
        if spec.bootloader == "extlinux" or (spec.bootflag == "boot" and first.role != "esp"):
            assert first.attrs == disk.LEGACY_BOOT
    if spec.bootloader != "none" and not spec.use_uefi:
        assert spec.arch in ("amd64", "i386")
    if spec.arch == "arm64" and not spec.part_type:
        assert layout.label == "gpt"


# --- single rules -------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "start_mib"), [
    (None, 1), (1, 1), (8192, 1), (MiB, 1), (MiB + 1, 2), (3 * 10**6, 3), (5 * MiB, 5),
])
def test_bootoffset_rounds_up_to_whole_mib(offset: int | None, start_mib: int) -> None:
    layout = compute_layout(DiskSpec(size=GiB, bootoffset=offset))
    assert layout.partitions[0].start == start_mib * GRAIN


def test_default_is_one_bootable_msdos_partition() -> None:
    layout = compute_layout(DiskSpec(size=GiB))
    assert layout.label == "dos"
    (root,) = layout.partitions
    assert (root.role, root.start, root.size, root.type, root.bootable, root.fstype) == (
        "root", 2048, GiB // 512 - 2048, "83", True, "ext4")


def test_full_layout_order_and_types_msdos() -> None:
    layout = compute_layout(DiskSpec(size=8 * GiB, use_uefi=True, part_type="msdos",
                                     bootsize=256 * MiB, swap=512 * MiB))
    assert [(p.role, p.type, p.size // GRAIN) for p in layout.partitions] == [
        ("esp", "ef", 128), ("boot", "83", 256),
        ("root", "83", 8 * 1024 - 1 - 128 - 256 - 512), ("swap", "82", 512)]
    assert layout.partitions[0].bootable


def test_uefi_gpt_types_and_names() -> None:
    layout = compute_layout(DiskSpec(size=8 * GiB, use_uefi=True, bootsize=256 * MiB,
                                     swap=512 * MiB, esp_size=200 * 10**6))
    assert layout.label == "gpt"
    assert [(p.role, p.type, p.name) for p in layout.partitions] == [
        ("esp", disk.ESP_GUID, "EFI system"), ("boot", disk.LINUX_GUID, "boot"),
        ("root", disk.LINUX_GUID, "root"), ("swap", disk.SWAP_GUID, "swap")]
    assert layout.partitions[0].size == 191 * GRAIN  # 200 MB rounded up to MiB
    assert all(p.attrs is None for p in layout.partitions)


def test_gpt_bios_grub_gets_a_bios_boot_partition() -> None:
    layout = compute_layout(DiskSpec(size=GiB, part_type="gpt"))
    bios, root = layout.partitions
    assert (bios.role, bios.start, bios.size, bios.type, bios.fstype) == (
        "bios_grub", 2048, 2048, disk.BIOS_GRUB_GUID, None)
    assert root.attrs == disk.LEGACY_BOOT
    # the backup GPT is left free; the root ends on a MiB boundary
    assert root.start + root.size <= GiB // 512 - 33


def test_gpt_extlinux_has_no_bios_boot_partition() -> None:
    layout = compute_layout(DiskSpec(size=GiB, part_type="gpt", bootloader="extlinux"))
    assert [p.role for p in layout.partitions] == ["root"]
    assert layout.partitions[0].attrs == disk.LEGACY_BOOT


def test_gpt_chosen_for_uefi_arm64_and_huge_disks() -> None:
    assert disk.table_type(DiskSpec(size=GiB)) == "dos"
    assert disk.table_type(DiskSpec(size=GiB, use_uefi=True)) == "gpt"
    assert disk.table_type(DiskSpec(size=GiB, arch="arm64")) == "gpt"
    assert disk.table_type(DiskSpec(size=3 * 1024 * GiB)) == "gpt"
    assert disk.table_type(DiskSpec(size=GiB, use_uefi=True, part_type="msdos")) == "dos"


def test_msdos_over_2tib_refused() -> None:
    one(problems(DiskSpec(size=3 * 1024 * GiB, part_type="msdos")), "--part-type msdos",
        "2 TiB")


@pytest.mark.parametrize(("size", "lba", "mkfs_bits", "dos_type"), [
    (100 * 10**6, True, "32", "c"), (100 * 10**6, False, "32", "b"),
    (40 * MiB, True, "16", "e"), (40 * MiB, False, "16", "6"),
])
def test_vfat_boot_types(size: int, lba: bool, mkfs_bits: str, dos_type: str) -> None:
    layout = compute_layout(DiskSpec(size=GiB, bootsize=size, boottype="vfat",
                                     bootflag="lba" if lba else "boot", bootloader="none"))
    boot = layout.get("boot")
    assert boot is not None and boot.type == dos_type and boot.bootable
    assert disk.mkfs_argv(boot, "/dev/loop0p1")[:3] == ["mkfs.vfat", "-F", mkfs_bits]


def test_bootflag_esp_makes_a_vfat_boot_an_esp() -> None:
    msdos = compute_layout(DiskSpec(size=GiB, bootsize=100 * MiB, boottype="vfat",
                                    bootflag="esp"))
    gpt = compute_layout(DiskSpec(size=GiB, bootsize=100 * MiB, boottype="vfat",
                                  bootflag="esp", part_type="gpt", bootloader="none"))
    assert msdos.partitions[0].type == "ef"
    assert gpt.partitions[0].type == disk.ESP_GUID


@pytest.mark.parametrize(("spec", "fragments"), [
    (DiskSpec(size=GiB, bootflag="lba"), ("--bootflag lba", "not FAT")),
    (DiskSpec(size=GiB, bootflag="esp"), ("--bootflag esp", "not FAT")),
    (DiskSpec(size=GiB, bootflag="legacy_boot"), ("--bootflag legacy_boot", "GPT")),
    (DiskSpec(size=GiB, bootsize=100 * MiB, boottype="vfat", bootflag="lba",
              part_type="gpt"), ("--bootflag lba", "msdos")),
    (DiskSpec(size=GiB, arch="armhf"), ("--grub", "armhf", "--use-uefi", "--no-grub")),
    (DiskSpec(size=GiB, arch="arm64", bootloader="extlinux"), ("--extlinux", "arm64")),
    (DiskSpec(size=GiB, bootloader="extlinux", roottype="xfs"), ("--roottype xfs",
                                                                 "extlinux")),
    (DiskSpec(size=GiB, bootloader="extlinux", bootsize=GiB // 4, boottype="btrfs"),
     ("--boottype btrfs", "extlinux")),
    (DiskSpec(size=GiB, bootsize=960 * MiB), ("--size", "root filesystem")),
])
def test_refusals_name_the_option(spec: DiskSpec, fragments: tuple[str, ...]) -> None:
    one(problems(spec), *fragments)


def test_layout_problems() -> None:
    assert disk.layout_problems(DiskSpec(size=GiB)) == []
    assert disk.layout_problems(DiskSpec(size=GiB, arch="armhf"))
    s = parse("--image", "/nonexistent/x.img", "--size", "2G", "--bootflag", "lba")
    one(disk.layout_problems(DiskSpec.from_settings(s, "amd64")), "--bootflag lba")


def test_layout_error_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        compute_layout(DiskSpec(size=GiB, arch="armhf"))


# --- sfdisk ---------------------------------------------------------------------------


def test_sfdisk_script_gpt() -> None:
    layout = compute_layout(DiskSpec(size=GiB, part_type="gpt", swap=256 * MiB))
    assert disk.sfdisk_script(layout) == (
        "label: gpt\nunit: sectors\nsector-size: 512\n\n"
        f'start=2048, size=2048, type={disk.BIOS_GRUB_GUID}, name="BIOS boot"\n'
        f'start=4096, size=1566720, type={disk.LINUX_GUID}, name="root", '
        'attrs="LegacyBIOSBootable"\n'
        f'start=1570816, size=524288, type={disk.SWAP_GUID}, name="swap"\n')


def test_sfdisk_script_msdos() -> None:
    layout = compute_layout(DiskSpec(size=GiB, bootsize=100 * MiB, boottype="vfat",
                                     bootflag="lba", bootloader="none"))
    assert disk.sfdisk_script(layout) == (
        "label: dos\nunit: sectors\nsector-size: 512\n\n"
        "start=2048, size=204800, type=c, bootable\n"
        "start=206848, size=1890304, type=83\n")


def test_partition_feeds_the_script_to_sfdisk() -> None:
    runner = RecordingRunner()
    layout = compute_layout(DiskSpec(size=GiB))
    disk.partition(runner, Path("/x/.img.part"), layout)
    assert runner.calls == [["sfdisk", "--quiet", "--wipe", "always", "--no-reread",
                             "--no-tell-kernel", "/x/.img.part"]]
    assert runner.inputs == [disk.sfdisk_script(layout).encode()]


def test_mask_sfdisk_json() -> None:
    real: dict[str, Any] = {"partitiontable": {
        "label": "gpt", "id": "84F22517-7AB3-AA44-B915-D830DCB3BB9A",
        "device": "/tmp/a b/img.raw", "unit": "sectors", "firstlba": 2048,
        "lastlba": 2097118, "sectorsize": 512,
        "partitions": [{"node": "/tmp/a b/img.raw1", "start": 2048, "size": 2048,
                        "type": disk.BIOS_GRUB_GUID,
                        "uuid": "FA68CB1C-4A9D-724E-9F48-5EC4C6EEB644", "name": "BIOS boot"}]}}
    masked = disk.mask_sfdisk_json(real)["partitiontable"]
    assert masked["id"] == masked["partitions"][0]["uuid"] == disk.MASK
    assert masked["device"] == "IMAGE" and masked["partitions"][0]["node"] == "IMAGE1"
    assert real["partitiontable"]["id"].startswith("84F2")  # not changed in place


# --- filesystems ------------------------------------------------------------------------


def test_mkfs_argv_for_every_filesystem() -> None:
    layout = compute_layout(DiskSpec(size=4 * GiB, use_uefi=True, bootsize=256 * MiB,
                                     boottype="ext3", swap=256 * MiB, roottype="btrfs"))
    devices = {p.role: f"/dev/loop3p{p.number}" for p in layout.partitions}
    runner = RecordingRunner()
    disk.make_filesystems(runner, layout, devices)
    assert runner.calls == [
        ["mkfs.vfat", "-F", "32", "-n", "EFI", "/dev/loop3p1"],
        ["mkfs.ext3", "-q", "-F", "-L", "boot", "/dev/loop3p2"],
        ["mkfs.btrfs", "-q", "-f", "-L", "root", "/dev/loop3p3"],
        ["mkswap", "--label", "swap", "/dev/loop3p4"],
    ]
    xfs = disk.Partition(1, "root", 2048, 2048, "xfs", "83")
    assert disk.mkfs_argv(xfs, "/dev/x") == ["mkfs.xfs", "-q", "-f", "-L", "root", "/dev/x"]


def test_bios_grub_partition_gets_no_filesystem() -> None:
    layout = compute_layout(DiskSpec(size=GiB, part_type="gpt"))
    runner = RecordingRunner()
    disk.make_filesystems(runner, layout, {"bios_grub": "/dev/l0p1", "root": "/dev/l0p2"})
    assert runner.calls == [["mkfs.ext4", "-q", "-F", "-L", "root", "/dev/l0p2"]]


# --- loop devices ---------------------------------------------------------------------


class FakeNodes:
    """Partition nodes that appear at partscan, or only after partx --add."""

    def __init__(self, runner: RecordingRunner, partscan: bool) -> None:
        self.runner, self.partscan = runner, partscan
        self.sleeps = 0.0

    def exists(self, node: str) -> bool:
        added = ["partx", "--add", "/dev/loop7"] in self.runner.calls
        return self.partscan or added

    def sleep(self, seconds: float) -> None:
        self.sleeps += seconds


def attach(partscan: bool, fail: bool = False) -> tuple[RecordingRunner, FakeNodes]:
    runner = RecordingRunner({"losetup": "/dev/loop7\n"})
    nodes = FakeNodes(runner, partscan)
    with disk.loop_attached(runner, Path("/x/img"), 2, exists=nodes.exists,
                            sleep=nodes.sleep, udevadm="") as loop:
        assert loop.device == "/dev/loop7"
        assert loop.nodes == ["/dev/loop7p1", "/dev/loop7p2"]
        assert runner.calls[-1] != ["losetup", "--detach", "/dev/loop7"]
        if fail:
            raise BuildError("boom")
    return runner, nodes


def test_loop_with_partscan() -> None:
    runner, nodes = attach(partscan=True)
    assert runner.calls == [["losetup", "--find", "--show", "--partscan", "/x/img"],
                            ["losetup", "--detach", "/dev/loop7"]]
    assert nodes.sleeps == 0


def test_loop_without_partscan_falls_back_to_partx() -> None:
    runner, nodes = attach(partscan=False)
    assert runner.calls == [["losetup", "--find", "--show", "--partscan", "/x/img"],
                            ["partx", "--add", "/dev/loop7"],
                            ["partx", "--delete", "/dev/loop7"],
                            ["losetup", "--detach", "/dev/loop7"]]
    assert 1.5 < nodes.sleeps < 2.5  # waited briefly for udev first


def test_loop_detached_on_failure() -> None:
    with pytest.raises(BuildError, match="boom"):
        attach(partscan=False, fail=True)


def test_loop_detached_when_partitions_never_appear() -> None:
    runner = RecordingRunner({"losetup": "/dev/loop7\n"})
    with pytest.raises(BuildError, match="did not appear: /dev/loop7p1"), \
            disk.loop_attached(runner, Path("/x/img"), 1, exists=lambda n: False,
                               sleep=lambda s: None, udevadm=""):
        pass
    assert runner.calls[-2:] == [["partx", "--delete", "/dev/loop7"],
                                 ["losetup", "--detach", "/dev/loop7"]]


def test_udevadm_settle_used_when_present() -> None:
    runner = RecordingRunner({"losetup": "/dev/loop7\n"})
    with disk.loop_attached(runner, Path("/x/img"), 1, exists=lambda n: True,
                            sleep=lambda s: None, udevadm="/usr/bin/udevadm"):
        pass
    assert ["/usr/bin/udevadm", "settle", "--timeout=10"] in runner.calls


class InterruptedAttach(RecordingRunner):
    def run(self, argv: Any, **kw: Any) -> Result:
        if list(argv)[:2] == ["losetup", "--find"]:
            self.calls.append(list(argv))
            raise KeyboardInterrupt
        return super().run(argv, **kw)


def test_interrupted_attach_detaches_what_it_may_have_attached() -> None:
    runner = InterruptedAttach({"losetup": "/dev/loop4\n"})
    with pytest.raises(KeyboardInterrupt), \
            disk.loop_attached(runner, Path("/x/img"), 1, udevadm=""):
        pass
    assert runner.calls[1] == ["losetup", "--noheadings", "--output", "NAME", "--associated",
                               "/x/img"]
    assert runner.calls[-1] == ["losetup", "--detach", "/dev/loop4"]


def test_partition_node_names() -> None:
    assert disk.partition_node("/dev/loop0", 2) == "/dev/loop0p2"
    assert disk.partition_node("/dev/sda", 2) == "/dev/sda2"


# --- the image file ---------------------------------------------------------------------


@pytest.fixture
def image_plan(plan_of: Callable[..., Plan], out: Path) -> Callable[..., Plan]:
    def make(*extra: str) -> Plan:
        return plan_of("--image", str(out / "disk.img"), "--size", "2G", *extra)
    return make


def planned_table(plan: Plan) -> str:
    """What sfdisk --json says of an image written as planned."""
    assert plan.image is not None
    return json.dumps(disk.expected_sfdisk_json(disk.compute_layout(plan.image.disk)))


def test_staged_image_is_sparse_full_size_and_beside_the_image(
        image_plan: Callable[..., Plan], out: Path) -> None:
    plan = image_plan()
    runner = RecordingRunner({"sfdisk": planned_table(plan)})
    with image.staged_image(plan, runner) as staged:
        assert staged.parent == out
        assert staged.name.startswith(".disk.img.") and staged.name.endswith(".part")
        assert staged.stat().st_size == 2 * 10**9
        assert staged.stat().st_blocks == 0
    assert sorted(p.name for p in out.iterdir()) == ["disk.img", "disk.img.sha256"]
    assert (out / "disk.img").stat().st_mode & 0o777 == 0o644
    digest = file_sha256(out / "disk.img")  # the sparse file: its holes read as zeros
    assert (out / "disk.img.sha256").read_text() == f"{digest}  disk.img\n"
    # The partition table is read back before the image takes its name.
    assert runner.calls == [["sfdisk", "--json", str(staged)]]


def test_image_that_is_not_the_planned_layout_is_refused(
        image_plan: Callable[..., Plan], out: Path) -> None:
    (out / "disk.img").write_bytes(b"the previous image")
    other = json.dumps(disk.expected_sfdisk_json(disk.compute_layout(DiskSpec(size=GiB))))
    with pytest.raises(BuildError, match="not the planned layout"), \
            image.staged_image(image_plan(), RecordingRunner({"sfdisk": other})):
        pass
    assert [p.name for p in out.iterdir()] == ["disk.img"]
    assert (out / "disk.img").read_bytes() == b"the previous image"


def test_staged_image_removed_on_failure(image_plan: Callable[..., Plan], out: Path) -> None:
    with pytest.raises(BuildError), image.staged_image(image_plan(), RecordingRunner()):
        raise BuildError("boom")
    assert list(out.iterdir()) == []


def test_staged_image_kept_on_failure_when_asked(
        image_plan: Callable[..., Plan], out: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(KeyboardInterrupt), \
            image.staged_image(image_plan("--keep-on-failure"), RecordingRunner()):
        raise KeyboardInterrupt
    assert [p.name for p in out.iterdir()] == ["disk.img.failed"]
    assert str(out / "disk.img.failed") in caplog.text


def test_staged_image_refuses_a_bad_layout_before_writing(
        image_plan: Callable[..., Plan], out: Path) -> None:
    with pytest.raises(UsageError, match="--bootflag lba"), \
            image.staged_image(image_plan("--bootflag", "lba"), RecordingRunner()):
        pass
    assert list(out.iterdir()) == []


QCOW2_INFO = json.dumps({"format": "qcow2", "virtual-size": 2 * 10**9})


def test_publish_qcow2_keeps_the_users_name(image_plan: Callable[..., Plan],
                                            out: Path) -> None:
    plan = image_plan("--convert-qcow2")
    runner = RecordingRunner({"sfdisk": planned_table(plan), "qemu-img": QCOW2_INFO})
    with image.staged_image(plan, runner) as raw:
        assert runner.calls == []
    sfdisk, convert, info = runner.calls
    assert sfdisk == ["sfdisk", "--json", str(raw)]
    assert convert[:6] == ["qemu-img", "convert", "-f", "raw", "-O", "qcow2"]
    assert convert[6] == str(raw)
    assert Path(convert[7]).parent == out and convert[7].endswith(".part")
    assert info[:3] == ["qemu-img", "info", "--output=json"]
    assert sorted(p.name for p in out.iterdir()) == ["disk.img", "disk.img.sha256"]


class FailingRunner(RecordingRunner):
    def run(self, argv: Any, **kw: Any) -> Result:
        result = super().run(argv, **kw)
        if argv[0] == "qemu-img":
            raise CommandError(list(argv), 1, ["qemu-img: error"])
        return result


def test_failed_conversion_leaves_nothing(image_plan: Callable[..., Plan], out: Path) -> None:
    plan = image_plan("--convert-qcow2")
    (out / "disk.img").write_bytes(b"the previous image")
    runner = FailingRunner({"sfdisk": planned_table(plan)})
    with pytest.raises(CommandError), image.staged_image(plan, runner):
        pass
    assert [p.name for p in out.iterdir()] == ["disk.img"]
    assert (out / "disk.img").read_bytes() == b"the previous image"


# --- a full image -----------------------------------------------------------------------


def target_for(plan: Plan, tmp: Path) -> image.ImageTarget:
    layout = compute_layout(image.disk_spec(plan))
    return image.ImageTarget(image=tmp / "img", loop="/dev/loop0", root=tmp / "root",
                             partitions={p.role: f"/dev/loop0p{p.number}"
                                         for p in layout.partitions},
                             layout=layout, work=tmp,
                             mounts={"root": tmp, "boot": tmp})


FREE = image.Usage(free=900 * MiB, total=1000 * MiB)
FULL = image.Usage(free=1 * MiB, total=1000 * MiB)


def test_full_root_is_explained(image_plan: Callable[..., Plan], tmp_path: Path) -> None:
    plan = image_plan("--size", "1G")
    exc = CommandError(["mmdebstrap", "bookworm"], 1, ["E: something"],
                       "bootstrapping with mmdebstrap failed")
    err = image.explain_full(plan, target_for(plan, tmp_path), exc, usage={"root": FULL})
    assert err is not None
    text = str(err)
    assert "ran out of space" in text and "/ has 1 MiB of 1000 MiB free" in text
    assert "raise --size (now 953 MiB) or --bootsize" in text
    assert "bootstrapping with mmdebstrap failed" in text


def test_full_boot_names_bootsize(image_plan: Callable[..., Plan], tmp_path: Path) -> None:
    plan = image_plan("--bootsize", "64M")
    err = image.explain_full(plan, target_for(plan, tmp_path), BuildError("x"),
                             usage={"root": FREE, "boot": FULL})
    assert err is not None
    assert "/boot has 1 MiB" in str(err) and "--bootsize (now 62 MiB)" in str(err)


def test_no_space_message_is_enough(image_plan: Callable[..., Plan], tmp_path: Path) -> None:
    plan = image_plan()
    exc = CommandError(["dpkg"], 2, ["dpkg: error: No space left on device"])
    err = image.explain_full(plan, target_for(plan, tmp_path), exc, usage={"root": FREE})
    assert err is not None and "raise --size" in str(err)
    apt = CommandError(["mmdebstrap"], 1, [
        "E: You don't have enough free space in /tmp/x/root/var/cache/apt/archives/."])
    assert image.explain_full(plan, target_for(plan, tmp_path), apt,
                              usage={"root": FREE}) is not None
    enospc = OSError(errno.ENOSPC, "No space")
    wrapped = BuildError("writing failed")
    wrapped.__cause__ = enospc
    assert image.explain_full(plan, target_for(plan, tmp_path), wrapped,
                              usage={"root": FREE}) is not None


@pytest.mark.parametrize("exc", [BuildError("the hook failed"), Interrupted("stop"),
                                 image.ImageFull("already explained: No space left on device")])
def test_other_failures_are_not_explained(image_plan: Callable[..., Plan], tmp_path: Path,
                                          exc: BaseException) -> None:
    plan = image_plan()
    usage = {"root": FULL if isinstance(exc, Interrupted) else FREE}
    assert image.explain_full(plan, target_for(plan, tmp_path), exc, usage=usage) is None


def test_usage_threshold() -> None:
    assert image.Usage(free=3 * MiB, total=100 * MiB).full
    assert not image.Usage(free=5 * MiB, total=100 * MiB).full
    assert image.Usage(free=15 * MiB, total=1000 * MiB).full
    assert not image.Usage(free=25 * MiB, total=1000 * MiB).full


def test_copy_argv() -> None:
    src = [Path("/r/boot/vmlinuz-6"), Path("/r/boot/grub")]
    assert image.copy_argv("ext2", src, Path("/w/move")) == [
        "cp", "--archive", "/r/boot/vmlinuz-6", "/r/boot/grub", "/w/move"]
    assert image.copy_argv("vfat", src, Path("/w/move"))[:4] == [
        "cp", "--recursive", "--dereference", "--preserve=timestamps"]


# --- attached(), with the loop device faked ---------------------------------------------


@pytest.fixture
def fake_loop(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    events: list[str] = []

    @contextlib.contextmanager
    def loop_attached(runner: Any, image_path: Path, count: int) -> Iterator[disk.Loop]:
        events.append(f"attach {image_path.name} {count}")
        try:
            yield disk.Loop("/dev/loop9", [f"/dev/loop9p{n}" for n in range(1, count + 1)])
        finally:
            events.append("detach")

    monkeypatch.setattr(disk, "loop_attached", loop_attached)
    return events


def mounts_of(runner: RecordingRunner) -> list[list[str]]:
    return [c for c in runner.calls if c[0] in ("mount", "umount")]


@pytest.mark.parametrize("tool", ["debootstrap", "mmdebstrap"])
def test_attached_mounts_root_then_boot_then_esp(
        image_plan: Callable[..., Plan], tmp_path: Path, fake_loop: list[str],
        tool: str) -> None:
    plan = image_plan("--use-uefi", "--bootsize", "200M", "--bootstrap-tool", tool)
    runner = RecordingRunner()
    work = tmp_path / "build"
    work.mkdir()
    with image.attached(plan, runner, tmp_path / "img", work) as target:
        assert fake_loop == ["attach img 3"]
        assert target.loop == "/dev/loop9"
        assert target.partitions == {"esp": "/dev/loop9p1", "boot": "/dev/loop9p2",
                                     "root": "/dev/loop9p3"}
        assert target.root == work / "root"
        later = tool == "mmdebstrap"  # it refuses a target with a /boot directory in it
        assert target.pending == (["boot", "esp"] if later else [])
        assert [c[0] for c in runner.calls] == ["sfdisk", "mkfs.vfat", "mkfs.ext2",
                                                "mkfs.ext4", "mount"] + (
            [] if later else ["mount", "mount"])
        assert mounts_of(runner)[1:] == ([] if later else [
            ["mount", "/dev/loop9p2", str(work / "root/boot")],
            ["mount", "/dev/loop9p1", str(work / "root/boot/efi")]])
        if later:
            image.mount_pending(runner, target)
        assert list(target.mounts) == ["root", "boot", "esp"]
    assert fake_loop == ["attach img 3", "detach"]


def test_attached_explains_a_full_image(image_plan: Callable[..., Plan], tmp_path: Path,
                                        fake_loop: list[str]) -> None:
    plan = image_plan()
    with pytest.raises(image.ImageFull, match="raise --size") as info, \
            image.attached(plan, RecordingRunner(), tmp_path / "img", tmp_path):
        raise CommandError(["mmdebstrap"], 1, ["dpkg: error: No space left on device"])
    assert isinstance(info.value.__cause__, CommandError)
    assert fake_loop[-1] == "detach"


def test_attached_passes_other_failures_on(image_plan: Callable[..., Plan], tmp_path: Path,
                                           fake_loop: list[str]) -> None:
    with pytest.raises(Interrupted), \
            image.attached(image_plan(), RecordingRunner(), tmp_path / "img", tmp_path):
        raise Interrupted("SIGINT")
    assert fake_loop[-1] == "detach"
