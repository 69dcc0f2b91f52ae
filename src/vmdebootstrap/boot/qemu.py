"""QEMU for the boot test: its command line, the UEFI firmware it boots, the
KVM-or-TCG decision, and running it so that it never outlives its caller.

QEMU runs in a session of its own, is started with the stop signals held
(see run.signals_held) and inside the try that stops its whole process
group, so Ctrl-C, SIGTERM or SIGHUP at any moment leaves nothing running;
its scratch files (a writable copy of the UEFI variable store, its stderr)
live in a directory that is removed the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import select
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

from vmdebootstrap.boot.console import Console, ConsoleClosed
from vmdebootstrap.boot.guests import (
    FIRMWARES,
    GUESTS,
    QEMU_BINARIES,
    find_uefi_firmware,
    firmware_problem,
    guest_firmware,
)
from vmdebootstrap.errors import VmdebootstrapError
from vmdebootstrap.host.binfmt import host_arch
from vmdebootstrap.host.run import Masker, kill_group, signals_held

log = logging.getLogger("vmdebootstrap.boot.qemu")


# Seconds QEMU has to exit after SIGTERM before its process group gets SIGKILL.
KILL_GRACE = 5.0


class BootTestError(VmdebootstrapError):
    """The boot test could not be set up (bad options, missing QEMU/firmware)."""


class BootTestRefused(BootTestError):
    """What was asked cannot be booted (not an image, missing QEMU or
    firmware): found before QEMU starts, one line per problem."""

    exit_code = 2  # as a usage error: nothing was started

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else problems
        super().__init__("\n".join(self.problems))


# ---- the command line -----------------------------------------------------------------

def _drive_value(path: Path) -> str:
    return str(path).replace(",", ",,")


def accel_args(arch: str, accel: str) -> list[str]:
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    guest = GUESTS.get(arch)
    return ["-accel", "tcg,thread=multi", "-cpu", guest.tcg_cpu if guest else "max"]


@dataclass(frozen=True)
class QemuPlan:
    arch: str
    firmware: str                 # bios | uefi | uefi-sb (FIRMWARES)
    accel: str                    # kvm | tcg
    media: str | None = None      # iso | raw | qcow2 | None (firmware only, for probes)
    image: Path | None = None
    memory: int = 1024
    smp: int = 2
    uefi_code: str | None = None
    uefi_vars: Path | None = None  # a writable copy
    extra: tuple[str, ...] = ()


def _needs_smm(plan: QemuPlan) -> bool:
    fw = guest_firmware(plan.arch, plan.firmware)
    return fw is not None and fw.smm and GUESTS[plan.arch].machine == "q35"


def _machine(plan: QemuPlan) -> str:
    machine = GUESTS[plan.arch].machine
    return f"{machine},smm=on" if _needs_smm(plan) else machine


def _firmware_args(plan: QemuPlan) -> list[str]:
    if plan.firmware not in FIRMWARES:
        raise BootTestError(f"firmware must be one of {', '.join(FIRMWARES)}, "
                            f"not {plan.firmware!r}")
    if plan.firmware == "bios":
        if not GUESTS[plan.arch].bios:
            raise BootTestError(f"{plan.arch} boots only with UEFI firmware")
        return []
    if plan.uefi_vars is None:
        raise BootTestError("UEFI boot needs a firmware variable store")
    vars_file = _drive_value(plan.uefi_vars)
    if plan.uefi_code is None:
        return ["-drive", f"if=pflash,format=raw,unit=0,file={vars_file}"]
    secure = (["-global", "driver=cfi.pflash01,property=secure,value=on"]
              if _needs_smm(plan) else [])
    return [*secure, "-drive", f"if=pflash,format=raw,unit=0,readonly=on,"
            f"file={_drive_value(Path(plan.uefi_code))}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_file}"]


def _media_args(plan: QemuPlan) -> list[str]:
    if plan.image is None or plan.media is None:
        return []
    file = _drive_value(plan.image)
    if plan.media == "iso" and GUESTS[plan.arch].machine == "virt":
        return ["-device", "virtio-scsi-pci,id=scsi0",
                "-drive", f"if=none,id=cd0,media=cdrom,readonly=on,format=raw,file={file}",
                "-device", "scsi-cd,drive=cd0"]
    if plan.media == "iso":
        return ["-drive", f"media=cdrom,readonly=on,format=raw,file={file}"]
    fmt = "qcow2" if plan.media == "qcow2" else "raw"
    return ["-drive", f"if=virtio,format={fmt},file={file}"]


def qemu_argv(plan: QemuPlan) -> list[str]:
    if plan.arch not in QEMU_BINARIES:
        raise BootTestError(f"--arch {plan.arch!r} is not supported")
    argv = [QEMU_BINARIES[plan.arch]]
    argv += ["-machine", _machine(plan)]
    argv += accel_args(plan.arch, plan.accel)
    argv += ["-m", str(plan.memory), "-smp", str(plan.smp), "-nodefaults", "-display", "none",
             "-no-reboot", "-snapshot", "-serial", "stdio", "-monitor", "none"]
    return argv + _firmware_args(plan) + _media_args(plan) + list(plan.extra)


def uefi_vars_copy(arch: str, directory: Path, *, secure_boot: bool = False,
                   firmware: str | None = None) -> tuple[str | None, Path]:
    """(code to map read-only or None, writable copy of the variable store in
    ``directory``) for booting ``arch`` with UEFI, Secure Boot or not
    (``firmware`` names uefi, uefi-sb or uefi32)."""
    firmware = firmware or ("uefi-sb" if secure_boot else "uefi")
    fw = find_uefi_firmware(arch, firmware=firmware)
    if fw is None:
        problem = firmware_problem(arch, firmware, os.path.isfile)
        raise BootTestError(problem or f"no UEFI firmware for {arch}")
    vars_copy = directory / "efivars.fd"
    shutil.copyfile(fw[1] or fw[0], vars_copy)
    return (fw[0] if fw[1] else None), vars_copy


def boot_plan(*, arch: str, firmware: str, accel: str, media: str, image: Path,
              scratch: Path, memory: int = 1024) -> QemuPlan:
    """The plan for booting ``image``; under UEFI (with Secure Boot or not) with
    a writable copy of the firmware's variable store in ``scratch``."""
    plan = QemuPlan(arch=arch, firmware=firmware, accel=accel, media=media,
                    image=image.resolve(), memory=memory)
    if firmware == "bios":
        return plan
    code, vars_copy = uefi_vars_copy(arch, scratch, firmware=firmware)
    return dataclasses.replace(plan, uefi_code=code, uefi_vars=vars_copy)


# ---- running QEMU ---------------------------------------------------------------------

@contextlib.contextmanager
def scratch_dir(prefix: str = "vmdbt-") -> Iterator[Path]:
    """A private temp directory, removed at the end of the with block, even
    when a signal arrives while it is being created or removed."""
    path: str | None = None
    try:
        with signals_held():
            path = tempfile.mkdtemp(prefix=prefix)
        yield Path(path)
    finally:
        if path is not None:
            with signals_held():
                shutil.rmtree(path, ignore_errors=True)


def serial_of(proc: subprocess.Popen[bytes], *, echo: TextIO | None = None,
              masker: Masker | None = None) -> Console:
    """The guest's serial port: QEMU's stdin and stdout."""
    assert proc.stdin is not None and proc.stdout is not None
    stdin = proc.stdin

    def write(data: bytes) -> None:
        stdin.write(data)
        stdin.flush()

    return Console(fd_reader(proc.stdout.fileno()), write, echo=echo, masker=masker)


def fd_reader(fd: int) -> Callable[[float], bytes | None]:
    def read(timeout: float) -> bytes | None:
        ready, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 65536) if ready else None
    return read


@contextlib.contextmanager
def qemu_running(argv: Sequence[str], *, stderr_to_stdout: bool = False,
                 stderr: IO[bytes] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run QEMU in its own process group; it never outlives the with block."""
    log.info("+ %s", shlex.join(argv))
    proc: subprocess.Popen[bytes] | None = None
    try:
        with signals_held():
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if stderr_to_stdout else (stderr or subprocess.DEVNULL),
                start_new_session=True)
        yield proc
    finally:
        if proc is not None:
            with signals_held():  # a second Ctrl-C must not cut the cleanup short
                kill_group(proc, KILL_GRACE)
                for pipe in (proc.stdin, proc.stdout):
                    with contextlib.suppress(OSError):
                        if pipe:
                            pipe.close()


# ---- KVM or TCG -----------------------------------------------------------------------

_KVM_CACHE: dict[str, bool] = {}
PROBE_SECONDS = 20.0
PROBE_OK = re.compile(r"BdsDxe|UEFI Interactive Shell|Shell>|No bootable device|Booting from")
PROBE_FATAL = re.compile(r"KVM internal error|emulation failure|kvm_.*Assertion|"
                         r"failed to initialize kvm|Could not access KVM")


def kvm_candidate(arch: str, host: str, kvm_ok: bool) -> bool:
    return kvm_ok and (arch == host or (arch == "i386" and host == "amd64"))


def _this_host() -> str | None:
    try:
        return host_arch()
    except VmdebootstrapError:
        return None  # a machine with no Debian architecture runs no guest under KVM


def choose_accel(requested: str, arch: str, *, host: str | None = None,
                 kvm_device_ok: bool | None = None,
                 probe: Callable[[str], bool] | None = None,
                 status: Callable[[str], None] | None = None) -> str:
    """'kvm' or 'tcg'.  With 'auto', KVM only if a short real boot proves it works
    (a nested /dev/kvm can exist and hang every guest).  ``status`` hears
    when that boot starts: it can take PROBE_SECONDS."""
    if requested in ("kvm", "tcg"):
        return requested
    if requested != "auto":
        raise BootTestError(f"--accel must be auto, kvm or tcg, not {requested!r}")
    host = host or _this_host()
    if kvm_device_ok is None:
        kvm_device_ok = os.access("/dev/kvm", os.R_OK | os.W_OK)
    if host is None or not kvm_candidate(arch, host, kvm_device_ok):
        return "tcg"
    if arch not in _KVM_CACHE:
        if status:
            status("checking that KVM runs a guest")
        _KVM_CACHE[arch] = (probe or probe_kvm)(arch)
        log.info("KVM probe for %s: %s", arch, "works" if _KVM_CACHE[arch] else
                 "guest makes no progress, using TCG")
    return "kvm" if _KVM_CACHE[arch] else "tcg"


def probe_argv(arch: str, uefi: tuple[str, str | None] | None, vars_copy: Path) -> list[str]:
    """Boot only the firmware under KVM: OVMF/AAVMF reaching its boot manager
    shows that long mode, FPU and flash emulation work; SeaBIOS is the fallback."""
    if uefi is not None:
        plan = QemuPlan(arch=arch, firmware="uefi", accel="kvm", memory=256, smp=1,
                        uefi_code=uefi[0] if uefi[1] else None, uefi_vars=vars_copy)
        return qemu_argv(plan)
    plan = QemuPlan(arch=arch, firmware="bios", accel="kvm", memory=64, smp=1,
                    extra=("-chardev", "file,id=dbg,path=/dev/stdout",
                           "-device", "isa-debugcon,iobase=0x402,chardev=dbg"))
    return qemu_argv(plan)


def probe_kvm(arch: str, seconds: float = PROBE_SECONDS) -> bool:
    if shutil.which(QEMU_BINARIES.get(arch, "")) is None:
        return False
    uefi = find_uefi_firmware(arch)
    with scratch_dir("vmdbt-probe-") as tmp:
        vars_copy = tmp / "vars.fd"
        if uefi is not None:
            shutil.copyfile(uefi[1] or uefi[0], vars_copy)
        argv = probe_argv(arch, uefi, vars_copy)
        with qemu_running(argv, stderr_to_stdout=True) as proc:
            assert proc.stdout is not None
            console = Console(fd_reader(proc.stdout.fileno()), lambda _b: None)
            try:
                found = console.expect([PROBE_OK, PROBE_FATAL], seconds)
            except ConsoleClosed:
                return False
            return found is not None and found[0] == 0
