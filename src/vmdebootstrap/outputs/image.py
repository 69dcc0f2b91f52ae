"""Disk image outputs, as build.build_image() uses them:

    with staged_image(plan, runner) as staged:       # .NAME.XXXX.part beside NAME
        with attached(plan, runner, staged, work) as target:   # partitioned, mounted
            ... bootstrap, configure, hook into target.root ...
            install_bootloader(plan, runner, target)  # fstab, bootloader, trim
    # on leaving: converted to qcow2 if asked, checked, renamed to NAME

Every step undoes itself on failure or Ctrl-C: mounts, partitions added by
partx, the loop device, and the half-written file (unless --keep-on-failure).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vmdebootstrap.errors import BuildError, Interrupted, NoSpace, exception_chain
from vmdebootstrap.host.chroot import chroot_mounts, daemons_blocked
from vmdebootstrap.host.publish import scratch_file, staged_file
from vmdebootstrap.host.resources import mounted, remove_tree
from vmdebootstrap.host.run import CommandError, Runner
from vmdebootstrap.intent.plan import Plan
from vmdebootstrap.outputs import bootloaders as bl
from vmdebootstrap.outputs import partitions as disk

log = logging.getLogger("vmdebootstrap")

MiB = 1024**2
# dpkg, tar, cp...; mtools; apt's check before it downloads
ENOSPC_TEXTS = ("No space left on device", "Disk full", "You don't have enough free space in")
NO_FS_TEXT = "unknown filesystem type"
FULL_FRACTION = 0.02  # a filesystem with less than this free (or 4 MiB) is full
FULL_BYTES = 4 * MiB
HOST_FULL_BYTES = 64 * MiB
ZERO_FILE = ".vmdebootstrap-zeros"



@dataclass
class ImageTarget:
    image: Path
    loop: str
    root: Path
    partitions: dict[str, str]  # role (esp, boot, swap, root, bios_grub) -> device node
    layout: disk.Layout
    work: Path
    mounts: dict[str, Path] = field(default_factory=dict)  # role -> where it is mounted
    pending: list[str] = field(default_factory=list)  # roles mounted by install_bootloader
    fat_staged: list[str] = field(default_factory=list)  # FAT roles written with mtools


def disk_spec(plan: Plan) -> disk.DiskSpec:
    assert plan.image is not None
    return plan.image.disk


# --- the image file -----------------------------------------------------------------


@contextlib.contextmanager
def staged_image(plan: Plan, runner: Runner) -> Iterator[Path]:
    """A sparse file of exactly --size bytes beside the final image, to build
    the image in.  On success the image (converted to qcow2 if asked) is
    checked and renamed onto its name; on failure it is deleted, or with
    --keep-on-failure kept as NAME.failed."""
    assert plan.image is not None
    spec, final = plan.image, plan.targets.path
    layout = disk.compute_layout(spec.disk)  # refuse a bad layout before writing a byte
    keep = plan.targets.keep_on_failure

    def check(path: Path) -> None:
        check_image(runner, path, layout, spec.disk.size, spec.qcow2)

    with staged_file(final, check=check, keep_failed=keep and not spec.qcow2,
                     checksum=True) as staged:
        if not spec.qcow2:
            os.truncate(staged, spec.disk.size)
            log.debug("staging the image in %s (%d bytes)", staged, spec.disk.size)
            yield staged
            return
        with scratch_file(final, keep_failed=keep) as raw:
            os.truncate(raw, spec.disk.size)
            log.debug("staging the raw image in %s (%d bytes)", raw, spec.disk.size)
            yield raw
            check_layout(runner, raw, layout)
            runner.run(qcow2_argv(raw, staged), label="qemu-img",
                       what="converting the image to qcow2 failed")


def check_image(runner: Runner, path: Path, layout: disk.Layout, size: int,
                qcow2: bool) -> None:
    """The image must be what was planned before it takes the user's name."""
    if qcow2:
        result = runner.run(["qemu-img", "info", "--output=json", str(path)], capture=True,
                            what="the qcow2 image does not read back")
        info = json.loads(result.stdout or "{}")
        virtual = -(-size // disk.SECTOR) * disk.SECTOR  # qemu-img rounds up to sectors
        if info.get("format") != "qcow2" or info.get("virtual-size") != virtual:
            raise BuildError(f"the qcow2 image is not what was planned: {info.get('format')}, "
                             f"{info.get('virtual-size')} bytes")
        return
    if path.stat().st_size != size:
        raise BuildError(f"the image has {path.stat().st_size} bytes, not the {size} planned")
    check_layout(runner, path, layout)


def check_layout(runner: Runner, path: Path, layout: disk.Layout) -> None:
    result = runner.run(["sfdisk", "--json", str(path)], capture=True,
                        what="the image's partition table does not read back")
    written = disk.mask_sfdisk_json(json.loads(result.stdout))
    if written != disk.expected_sfdisk_json(layout):
        raise BuildError("the image's partition table is not the planned layout:\n"
                         + json.dumps(written["partitiontable"].get("partitions", [])))


def qcow2_argv(raw: Path, qcow2: Path) -> list[str]:
    return ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)]


# --- partitions, loop device, filesystems, mounts -------------------------------------


def _mount_boot_later(plan: Plan) -> bool:
    """mmdebstrap refuses a target that holds anything but lost+found, such as
    the mount point of /boot.  Unless it is told to skip that check, /boot and
    the ESP are mounted after the bootstrap and what it put there is moved over."""
    if plan.bootstrap_tool != "mmdebstrap":
        return False
    from vmdebootstrap.root.bootstrap import mmdebstrap_argv

    argv = mmdebstrap_argv(plan, Path("root"))
    return not any(a.startswith("--skip") and "check/empty" in a for a in argv)


@contextlib.contextmanager
def attached(plan: Plan, runner: Runner, image: Path, work: Path) -> Iterator[ImageTarget]:
    """Partition ``image``, attach it, make the filesystems, mount the root at
    work/root with /boot and /boot/efi below it, and yield.  Everything is
    unmounted and detached on the way out, success or not.  A failure that
    filled the image becomes a BuildError saying which size to raise."""
    layout = disk.compute_layout(disk_spec(plan))
    disk.partition(runner, image, layout)
    with contextlib.ExitStack() as stack:
        loop = stack.enter_context(disk.loop_attached(runner, image, len(layout.partitions)))
        devices = {p.role: loop.nodes[p.number - 1] for p in layout.partitions}
        disk.make_filesystems(runner, layout, devices)
        root = work / "root"
        target = ImageTarget(image=image, loop=loop.device, root=root, partitions=devices,
                             layout=layout, work=work)
        # Unmounting the root unmounts everything below it first.
        stack.enter_context(mounted(runner, devices["root"], root))
        target.mounts["root"] = root
        later = _mount_boot_later(plan)
        for role in ("boot", "esp"):
            if layout.get(role) is None:
                continue
            if later:
                target.pending.append(role)
            else:
                _mount_partition(runner, target, role)
        if target.pending:
            log.debug("mounting %s after the bootstrap (mmdebstrap needs an empty target)",
                      " and ".join(target.pending))
        try:
            yield target
        except Exception as exc:
            full = explain_full(plan, target, exc)
            if full is not None:
                raise full from exc
            raise


def _mountpoint(target: ImageTarget, role: str) -> Path:
    part = target.layout.get(role)
    assert part is not None and part.mountpoint
    return target.root / part.mountpoint.lstrip("/")


def _mount_partition(runner: Runner, target: ImageTarget, role: str) -> None:
    """Mount /boot or the ESP in the root.  A kernel without FAT support (it
    happens in minimal VMs) gets a tmpfs there instead, named after the
    partition so that grub-install and grub-probe find the FAT filesystem
    behind it; write_fat_partitions() copies its files in with mtools."""
    part = target.layout.get(role)
    assert part is not None
    device, where = target.partitions[role], _mountpoint(target, role)
    where.mkdir(parents=True, exist_ok=True)
    try:
        runner.run(["mount", device, str(where)], what=f"mounting {device} on {where}")
    except CommandError as exc:
        if part.fstype != "vfat" or not any(NO_FS_TEXT in line for line in exc.tail):
            raise
        log.info("this kernel cannot mount FAT: %s is written with mtools", part.mountpoint)
        runner.run(fat_stage_argv(device, where),
                   what=f"mounting a staging tmpfs on {where} failed")
        target.fat_staged.append(role)
    target.mounts[role] = where


def fat_stage_argv(device: str, where: Path) -> list[str]:
    return ["mount", "-t", "tmpfs", "-o", "mode=0755", device, str(where)]


def mount_pending(runner: Runner, target: ImageTarget) -> None:
    """Mount /boot and the ESP if attached() left them for later, moving what
    the bootstrap wrote into those directories onto their filesystems."""
    for role in list(target.pending):
        part = target.layout.get(role)
        assert part is not None
        where = _mountpoint(target, role)
        aside = where.with_name(f".{where.name}.vmdebootstrap")
        moved = where.is_dir() and any(where.iterdir())
        if moved:
            where.rename(aside)
        _mount_partition(runner, target, role)
        target.pending.remove(role)
        if moved:
            fstype = "tmpfs" if role in target.fat_staged else part.fstype
            runner.run(copy_argv(fstype, sorted(aside.iterdir()), where), label="cp",
                       what=f"moving {part.mountpoint} onto its own partition failed")
            remove_tree(aside)


def copy_argv(fstype: str | None, sources: list[Path], dest: Path) -> list[str]:
    if fstype == "vfat":  # no owners, modes or symbolic links on FAT
        return ["cp", "--recursive", "--dereference", "--preserve=timestamps",
                *map(str, sources), str(dest)]
    return ["cp", "--archive", *map(str, sources), str(dest)]


def write_fat_partitions(runner: Runner, target: ImageTarget) -> None:
    """Copy what was staged for FAT partitions (see _mount_partition) onto them."""
    for role in target.fat_staged:
        where = target.mounts[role]
        entries = sorted(where.iterdir())
        if entries:
            runner.run(mcopy_argv(target.partitions[role], entries), label="mcopy",
                       env={"MTOOLS_SKIP_CHECK": "1"},
                       what=f"writing {where.name} onto its FAT filesystem failed")


def mcopy_argv(device: str, sources: list[Path]) -> list[str]:
    return ["mcopy", "-i", device, "-s", "-p", "-m", "-n", "-Q", *map(str, sources), "::/"]


# --- when the image fills up ----------------------------------------------------------


class ImageFull(NoSpace):
    """The image's filesystems ran out of space; the message says what to raise."""


@dataclass(frozen=True)
class Usage:
    free: int
    total: int

    @property
    def full(self) -> bool:
        return self.free < max(FULL_BYTES, int(self.total * FULL_FRACTION))


def fs_usage(path: Path) -> Usage | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return Usage(st.f_bfree * st.f_frsize, st.f_blocks * st.f_frsize)


def _says_enospc(exc: BaseException) -> bool:
    for e in exception_chain(exc):
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        lines = [str(e), *(e.tail if isinstance(e, CommandError) else [])]
        if any(t in line for t in ENOSPC_TEXTS for line in lines):
            return True
    return False


def explain_full(plan: Plan, target: ImageTarget, exc: BaseException,
                 usage: Mapping[str, Usage | None] | None = None) -> ImageFull | None:
    """A BuildError naming the option to raise when ``exc`` came from a full
    image, else None.  ``usage`` (role -> Usage) is measured when not given."""
    if isinstance(exc, (Interrupted, KeyboardInterrupt, ImageFull)):
        return None
    if usage is None:
        usage = {role: fs_usage(path) for role, path in target.mounts.items()}
    full = [role for role, u in usage.items() if u is not None and u.full]
    if not full and not _says_enospc(exc):
        return None
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if len(first) > 200:
        first = first[:200] + "..."
    if isinstance(exc, CommandError):
        said = [line.strip() for line in exc.tail if any(t in line for t in ENOSPC_TEXTS)]
        first += "".join(f"\n    {line}" for line in said[-2:])
    if not full:
        host = fs_usage(target.image.parent)
        if host is not None and host.free < HOST_FULL_BYTES:
            return ImageFull(f"the host filesystem holding {target.image.parent} is full "
                              f"({host.free // MiB} MiB free); make room there or build "
                              f"elsewhere\n  the failure: {first}")
    names = {"root": "/", "boot": "/boot", "esp": "/boot/efi"}
    where = "; ".join(f"{names.get(r, r)} has {u.free // MiB} MiB of {u.total // MiB} MiB free"
                      for r in full if (u := usage[r]) is not None)
    advice = [f"--size (now {disk_spec(plan).size // MiB} MiB)"]
    boot, esp = target.layout.get("boot"), target.layout.get("esp")
    if boot is not None:
        advice.append(f"--bootsize (now {boot.size_bytes // MiB} MiB)")
    else:
        advice.append("--bootsize (for a separate /boot)")
    if esp is not None and "esp" in full:
        advice.append(f"--esp-size (now {esp.size_bytes // MiB} MiB)")
    return ImageFull(
        "the disk image ran out of space" + (f" ({where})" if where else "")
        + f": raise {' or '.join(advice)}\n  the failure: {first}")


# --- fstab, bootloader, free space ------------------------------------------------------


def filesystem_uuid(runner: Runner, device: str) -> str:
    result = runner.run(["blkid", "--probe", "--output", "value", "--match-tag", "UUID",
                         device], capture=True, what=f"reading the UUID of {device} failed")
    uuid = result.stdout.strip()
    if not uuid:
        raise BuildError(f"{device} has no filesystem UUID")
    return uuid


def write_fstab(runner: Runner, target: ImageTarget) -> dict[str, str]:
    """/etc/fstab by filesystem UUID; returns role -> UUID."""
    layout, root = target.layout, target.root
    uuids = {p.role: filesystem_uuid(runner, target.partitions[p.role])
             for p in layout.partitions if p.fstype}
    entries = [bl.FstabEntry(uuids[p.role], p.mountpoint or "none", p.fstype)
               for p in layout.partitions if p.fstype]
    fstab = root / "etc/fstab"
    existing = fstab.read_text(errors="replace") if fstab.exists() else ""
    fstab.write_text(bl.fstab_text(entries, existing))
    return uuids


def install_bootloader(plan: Plan, runner: Runner, target: ImageTarget) -> None:
    """With the root populated and mounted: /etc/fstab, the bootloader, and
    (unless --sparse) free space trimmed so that it reads as zeros."""
    assert plan.image is not None
    spec, system = plan.image, plan.system
    bootloader = spec.disk.bootloader
    mount_pending(runner, target)
    layout, root = target.layout, target.root
    uuids = write_fstab(runner, target)
    serial = system.serial_tty
    cmdline = [*bl.kernel_cmdline(serial, no_ifnames=system.dhcp == "ifupdown"),
               *spec.kernel_append]
    devices = bl.Devices(target.loop, tuple(target.partitions[p.role]
                                            for p in layout.partitions),
                         {target.partitions[r]: u for r, u in uuids.items()})
    if bootloader == "grub":
        with chroot_mounts(runner, root), daemons_blocked(root), \
                bl.devices_in_chroot(runner, root, devices):
            bl.install_grub(runner, root, arch=plan.arch, use_uefi=spec.disk.use_uefi,
                            disk=target.loop, secure_boot=spec.secure_boot,
                            default_text=bl.grub_default_text(cmdline, serial))
    elif bootloader == "extlinux":
        separate = layout.get("boot") is not None
        kernels = bl.find_kernels(root / "boot", "" if separate else "/boot")
        conf = bl.extlinux_conf_text(kernels, uuids["root"], cmdline, serial)
        with chroot_mounts(runner, root), bl.devices_in_chroot(runner, root, devices):
            bl.install_extlinux(runner, root, conf)
        bl.write_mbr(bl.mbr_blob(root, layout.label), target.loop)
    elif spec.mbr:
        bl.write_mbr(bl.mbr_blob(root, layout.label), target.loop)
    if spec.mbr and bootloader == "grub":
        log.info("--mbr: grub writes its own boot code; nothing else is written")
    write_fat_partitions(runner, target)
    if not spec.sparse:
        trim_free_space(runner, target)


def trim_free_space(runner: Runner, target: ImageTarget) -> None:
    """Discard free blocks: the loop device punches holes in the image file, so
    free space reads as zeros (and compresses to nothing) while the file stays
    sparse.  Where discard is not supported, free space is overwritten with zeros."""
    for role in ("esp", "boot", "root"):
        where = target.mounts.get(role)
        if where is None or role in target.fat_staged:  # never written but by mcopy
            continue
        result = runner.run(["fstrim", "--verbose", str(where)], check=False, label="fstrim")
        if result.returncode != 0:
            log.debug("fstrim %s failed; writing zeros over its free space", where)
            zeros = where / ZERO_FILE
            runner.run(["dd", "if=/dev/zero", f"of={zeros}", "bs=1M", "conv=fsync"],
                       check=False, label="dd")
            zeros.unlink(missing_ok=True)
