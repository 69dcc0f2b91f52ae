"""Prove that an ISO or disk image boots: start QEMU, log in on the serial
console, run a command and report its output and exit status.

The guest must run a getty on its first serial port (``console=ttyS0`` on the
kernel command line, as ``--serial-console`` builds do).  The password is
only ever typed over the serial console: it is never on QEMU's command line,
is never logged as typed, and is masked in console output that is logged or
printed (see run.Masker for the minimum length it masks).  Accounts that must
change their password at first login are not supported (the test reports
that instead of changing it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import platform
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TextIO

from vmdebootstrap.boot.console import (
    FATAL,
    LOGIN,
    BootFailed,
    Console,
    ConsoleClosed,
    default_command,
    login_and_run,
)
from vmdebootstrap.errors import VmdebootstrapError
from vmdebootstrap.host.run import Masker, Runner, SubprocessRunner

log = logging.getLogger("vmdebootstrap.boot.boottest")

QEMU_BINARIES = {"amd64": "qemu-system-x86_64", "i386": "qemu-system-i386",
                 "arm64": "qemu-system-aarch64"}
HOST_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "i686": "i386", "i386": "i386",
               "aarch64": "arm64", "arm64": "arm64"}
# (code, vars template) pairs, best first; vars None = one combined writable image.
UEFI_FIRMWARE: dict[str, list[tuple[str, str | None]]] = {
    "amd64": [("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
              ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
              ("/usr/share/ovmf/OVMF.fd", None)],
    "i386": [("/usr/share/OVMF/OVMF32_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF32_VARS_4M.fd")],
    "arm64": [("/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd")],
}
ESP_TYPE_GUID = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b").bytes_le
HEADER_BYTES = 64 * 1024


class BootTestError(VmdebootstrapError):
    """The boot test could not be set up (bad options, missing QEMU/firmware)."""


# ---- what to boot and how -------------------------------------------------------------

def host_arch() -> str:
    return HOST_ARCHES.get(platform.machine(), platform.machine())


def detect_media(path: Path, header: bytes) -> str:
    """'iso' (boot as a CD), 'qcow2' or 'raw' (boot as a disk).

    A hybrid ISO copied to a file not named ``.iso`` is booted as a disk."""
    if header[:4] == b"QFI\xfb":
        return "qcow2"
    if path.suffix.lower() == ".iso":
        return "iso"
    return "raw"


def disk_firmwares(header: bytes) -> list[str]:
    """Which firmware a raw disk's first sectors say it is made for."""
    if len(header) < 512 or header[510:512] != b"\x55\xaa":
        return ["bios"]
    mbr_types = [header[446 + 16 * i + 4] for i in range(4)]
    esp = 0xEF in mbr_types
    if 0xEE in mbr_types and header[512:520] == b"EFI PART":
        entries_lba = int.from_bytes(header[512 + 72:512 + 80], "little")
        count = int.from_bytes(header[512 + 80:512 + 84], "little")
        size = int.from_bytes(header[512 + 84:512 + 88], "little")
        for i in range(min(count, 256)):
            off = entries_lba * 512 + i * size
            if off + 16 <= len(header) and header[off:off + 16] == ESP_TYPE_GUID:
                esp = True
    bios = any(header[:440])
    if esp and bios:
        return ["bios", "uefi"]
    return ["uefi"] if esp else ["bios"]


def default_firmwares(media: str, arch: str, header: bytes) -> list[str]:
    if arch == "arm64":
        return ["uefi"]
    if media == "iso":
        return ["bios", "uefi"]
    return disk_firmwares(header)


def find_uefi_firmware(arch: str, exists: Callable[[str], bool] = os.path.isfile
                       ) -> tuple[str, str | None] | None:
    for code, vars_ in UEFI_FIRMWARE.get(arch, []):
        if exists(code) and (vars_ is None or exists(vars_)):
            return code, vars_
    return None


def parse_user(value: str) -> tuple[str, str | None]:
    """'NAME/PASSWORD' -> (name, password); 'NAME/' -> empty password; 'NAME' -> None."""
    name, sep, password = value.partition("/")
    if not re.fullmatch(r"[a-z_][a-z0-9_.-]*\$?", name):
        raise BootTestError(f"--user: {name!r} is not a user name")
    return name, (password if sep else None)


def _drive_value(path: Path) -> str:
    return str(path).replace(",", ",,")


def accel_args(arch: str, accel: str) -> list[str]:
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]


@dataclass(frozen=True)
class QemuPlan:
    arch: str
    firmware: str                 # bios | uefi
    accel: str                    # kvm | tcg
    media: str | None = None      # iso | raw | qcow2 | None (firmware only, for probes)
    image: Path | None = None
    memory: int = 1024
    smp: int = 2
    uefi_code: str | None = None
    uefi_vars: Path | None = None  # a writable copy
    extra: tuple[str, ...] = ()


def qemu_argv(plan: QemuPlan) -> list[str]:
    if plan.arch not in QEMU_BINARIES:
        raise BootTestError(f"--arch {plan.arch!r} is not supported")
    argv = [QEMU_BINARIES[plan.arch]]
    argv += ["-machine", "virt" if plan.arch == "arm64" else "q35"]
    argv += accel_args(plan.arch, plan.accel)
    argv += ["-m", str(plan.memory), "-smp", str(plan.smp), "-nodefaults", "-display", "none",
             "-no-reboot", "-snapshot", "-serial", "stdio", "-monitor", "none"]
    if plan.firmware == "uefi":
        if plan.uefi_vars is None:
            raise BootTestError("UEFI boot needs a firmware variable store")
        if plan.uefi_code is not None:
            argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,"
                     f"file={_drive_value(Path(plan.uefi_code))}"]
            argv += ["-drive", f"if=pflash,format=raw,unit=1,file={_drive_value(plan.uefi_vars)}"]
        else:
            argv += ["-drive", f"if=pflash,format=raw,unit=0,file={_drive_value(plan.uefi_vars)}"]
    elif plan.arch == "arm64":
        raise BootTestError("arm64 boots only with UEFI firmware")
    if plan.image is not None and plan.media is not None:
        file = _drive_value(plan.image)
        if plan.media == "iso" and plan.arch == "arm64":
            argv += ["-device", "virtio-scsi-pci,id=scsi0",
                     "-drive", f"if=none,id=cd0,media=cdrom,readonly=on,format=raw,file={file}",
                     "-device", "scsi-cd,drive=cd0"]
        elif plan.media == "iso":
            argv += ["-drive", f"media=cdrom,readonly=on,format=raw,file={file}"]
        else:
            fmt = "qcow2" if plan.media == "qcow2" else "raw"
            argv += ["-drive", f"if=virtio,format={fmt},file={file}"]
    return argv + list(plan.extra)


# ---- KVM or TCG -----------------------------------------------------------------------

_KVM_CACHE: dict[str, bool] = {}
PROBE_SECONDS = 20.0
PROBE_OK = re.compile(r"BdsDxe|UEFI Interactive Shell|Shell>|No bootable device|Booting from")
PROBE_FATAL = re.compile(r"KVM internal error|emulation failure|kvm_.*Assertion|"
                         r"failed to initialize kvm|Could not access KVM")


def kvm_candidate(arch: str, host: str, kvm_ok: bool) -> bool:
    return kvm_ok and (arch == host or (arch == "i386" and host == "amd64"))


def choose_accel(requested: str, arch: str, *, host: str | None = None,
                 kvm_device_ok: bool | None = None,
                 probe: Callable[[str], bool] | None = None) -> str:
    """'kvm' or 'tcg'.  With 'auto', KVM only if a short real boot proves it works
    (a nested /dev/kvm can exist and hang every guest)."""
    if requested in ("kvm", "tcg"):
        return requested
    if requested != "auto":
        raise BootTestError(f"--accel must be auto, kvm or tcg, not {requested!r}")
    host = host or host_arch()
    if kvm_device_ok is None:
        kvm_device_ok = os.access("/dev/kvm", os.R_OK | os.W_OK)
    if not kvm_candidate(arch, host, kvm_device_ok):
        return "tcg"
    if arch not in _KVM_CACHE:
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
    with tempfile.TemporaryDirectory(prefix="vmdbt-probe-") as tmp:
        vars_copy = Path(tmp, "vars.fd")
        if uefi is not None:
            shutil.copyfile(uefi[1] or uefi[0], vars_copy)
        argv = probe_argv(arch, uefi, vars_copy)
        with _qemu(argv, stderr_to_stdout=True) as proc:
            assert proc.stdout is not None
            console = Console(_fd_reader(proc.stdout.fileno()), lambda _b: None)
            try:
                found = console.expect([PROBE_OK, PROBE_FATAL], seconds)
            except ConsoleClosed:
                return False
            return found is not None and found[0] == 0


# ---- running QEMU ---------------------------------------------------------------------

def _fd_reader(fd: int) -> Callable[[float], bytes | None]:
    def read(timeout: float) -> bytes | None:
        ready, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 65536) if ready else None
    return read


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything QEMU left in its group


@contextlib.contextmanager
def _qemu(argv: Sequence[str], *, stderr_to_stdout: bool = False,
          stderr: IO[bytes] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run QEMU in its own process group; it never outlives the with block."""
    log.info("+ %s", shlex.join(argv))
    proc = subprocess.Popen(
        list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if stderr_to_stdout else (stderr or subprocess.DEVNULL),
        start_new_session=True)
    try:
        yield proc
    finally:
        _kill_group(proc)
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if pipe:
                    pipe.close()


@dataclass
class BootReport:
    firmware: str
    accel: str
    seconds_to_login: float | None
    command_output: str
    ok: bool
    returncode: int | None = None
    error: str | None = None
    console_tail: str = field(default="", repr=False)


def _read_header(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(HEADER_BYTES)


def disk_header(path: Path, media: str, runner: Runner) -> bytes:
    """The first sectors as the guest sees them (qcow2 decoded by qemu-img)."""
    if media != "qcow2":
        return _read_header(path)
    if shutil.which("qemu-img") is None:
        return b""
    with tempfile.TemporaryDirectory(prefix="vmdbt-") as tmp:
        out = Path(tmp, "head.raw")
        runner.run(["qemu-img", "dd", "-f", "qcow2", "-O", "raw", f"bs={HEADER_BYTES}",
                    "count=1", f"if={path}", f"of={out}"], what=f"reading {path}")
        return out.read_bytes() if out.is_file() else b""


def boot_test(path: Path, *, firmware: str, arch: str, user: str | None,
              password: str | None, command: str | None, timeout: float,
              accel: str = "auto", log: Callable[[str], None] = log.info,
              media: str | None = None, memory: int = 1024,
              console: TextIO | None = None) -> BootReport:
    """Boot ``path`` once with ``firmware`` (bios|uefi) and, if ``user`` is given,
    log in and run ``command``.  Without a user, reaching the login prompt is the test."""
    if not path.is_file():
        raise BootTestError(f"{path} does not exist")
    if firmware not in ("bios", "uefi"):
        raise BootTestError(f"firmware must be bios or uefi, not {firmware!r}")
    if shutil.which(QEMU_BINARIES.get(arch, "qemu-system-" + arch)) is None:
        raise BootTestError(f"{QEMU_BINARIES.get(arch, arch)} is not installed "
                            "(package qemu-system-x86 or qemu-system-arm)")
    media = media or detect_media(path, _read_header(path))
    accel = choose_accel(accel, arch)
    masker = Masker()
    if password:
        masker.add(password)
    with tempfile.TemporaryDirectory(prefix="vmdbt-") as tmp:
        plan = QemuPlan(arch=arch, firmware=firmware, accel=accel, media=media,
                        image=path.resolve(), memory=memory)
        if firmware == "uefi":
            fw = find_uefi_firmware(arch)
            if fw is None:
                raise BootTestError(f"no UEFI firmware for {arch} (install ovmf, "
                                    "or qemu-efi-aarch64 for arm64)")
            vars_copy = Path(tmp, "efivars.fd")
            shutil.copyfile(fw[1] or fw[0], vars_copy)
            plan = dataclasses.replace(plan, uefi_code=fw[0] if fw[1] else None,
                                       uefi_vars=vars_copy)
        argv = qemu_argv(plan)
        errlog = Path(tmp, "qemu.stderr")
        log(f"{firmware}: booting {path.name} ({media}, {accel})")
        started = time.monotonic()
        with errlog.open("wb") as err, _qemu(argv, stderr=err) as proc:
            assert proc.stdin is not None and proc.stdout is not None
            stdin = proc.stdin

            def write(data: bytes) -> None:
                stdin.write(data)
                stdin.flush()

            con = Console(_fd_reader(proc.stdout.fileno()), write, echo=console, masker=masker)
            report = BootReport(firmware, accel, None, "", False)
            try:
                if user is None:
                    found = con.expect([LOGIN, FATAL], timeout)
                    if found is None or found[0] != 0:
                        raise BootFailed("no login prompt" if found is None
                                         else f"the guest failed: {found[1].group(0)}")
                    report.seconds_to_login = time.monotonic() - started
                    report.ok = True
                else:
                    session = login_and_run(
                        con, user=user, password=password,
                        command=command or default_command(user),
                        started=started, deadline=started + timeout)
                    report.seconds_to_login = session.seconds_to_login
                    report.command_output = session.output
                    report.returncode = session.returncode
                    report.ok = session.returncode == 0
                    if not report.ok:
                        report.error = f"the command exited with status {session.returncode}"
            except (BootFailed, ConsoleClosed, BrokenPipeError) as e:
                report.error = str(e) or type(e).__name__
            report.console_tail = con.tail()
        if not report.ok and report.error:
            qemu_err = errlog.read_text(errors="replace").strip()
            if qemu_err:
                report.error += "\nQEMU said:\n" + masker(qemu_err[-1500:])
    return report


# ---- command line ---------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="vmdebootstrap-boottest",
        description="Boot an ISO or disk image in QEMU, log in on the serial console "
                    "and run a command.")
    p.add_argument("file", metavar="FILE", type=Path, help="an .iso, raw disk image or .qcow2")
    p.add_argument("--firmware", choices=("bios", "uefi", "both"),
                   help="default: both for ISOs, else what the disk's partitions suggest")
    p.add_argument("--arch", default=host_arch(), choices=sorted(QEMU_BINARIES))
    p.add_argument("--media", choices=("iso", "raw", "qcow2"),
                   help="boot FILE as a CD (iso) or disk (default: from name and contents)")
    p.add_argument("--user", metavar="NAME/PASSWORD",
                   help="log in as NAME; 'NAME/' = empty password, 'NAME/-' = read it from stdin")
    p.add_argument("--command", help="run this after logging in (default: cat "
                   "/etc/debian_version, plus a sudo check for non-root users); "
                   "the shell variable $PASSWORD holds the password")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per boot (600)")
    p.add_argument("--memory", type=int, default=1024, help="MiB (1024)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="stream the serial console to stderr")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(message)s", stream=sys.stderr)

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        user = password = None
        if args.user:
            user, password = parse_user(args.user)
            if password == "-":
                password = sys.stdin.readline().rstrip("\n")
        path: Path = args.file
        if not path.is_file():
            raise BootTestError(f"{path} does not exist")
        media = args.media or detect_media(path, _read_header(path))
        header = disk_header(path, media, SubprocessRunner())
        if args.firmware in ("bios", "uefi"):
            firmwares = [args.firmware]
        elif args.firmware == "both":
            firmwares = ["bios", "uefi"]
        else:
            firmwares = default_firmwares(media, args.arch, header)
        ok = True
        for fw in firmwares:
            report = boot_test(path, firmware=fw, arch=args.arch, user=user, password=password,
                               command=args.command, timeout=args.timeout, accel=args.accel,
                               log=lambda msg: print(msg, file=sys.stderr), media=media,
                               memory=args.memory, console=sys.stderr if args.verbose else None)
            login = (f"{report.seconds_to_login:.1f} s" if report.seconds_to_login is not None
                     else "never")
            print(f"{fw} ({report.accel}): login after {login}: "
                  f"{'OK' if report.ok else 'FAILED'}")
            if report.command_output:
                print(report.command_output)
            if not report.ok:
                ok = False
                print(f"{fw}: {report.error}", file=sys.stderr)
                if not args.verbose and report.console_tail:
                    print(f"--- last console output ---\n{report.console_tail}", file=sys.stderr)
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except VmdebootstrapError as e:
        print(f"vmdebootstrap-boottest: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())


def check_output(path: Path, *, arch: str, user: str | None, password: str | None,
                 timeout: float = 900, log: Callable[[str], None] = log.info) -> list[BootReport]:
    """Boot a freshly built output under each firmware it is made for
    (--boot-test); raise BootTestError unless every boot logged in."""
    media = detect_media(path, _read_header(path))
    header = disk_header(path, media, SubprocessRunner())
    reports = []
    for fw in default_firmwares(media, arch, header):
        report = boot_test(path, firmware=fw, arch=arch, user=user, password=password,
                           command=None, timeout=timeout, log=log, media=media)
        login = ("never" if report.seconds_to_login is None
                 else f"{report.seconds_to_login:.0f} s")
        log(f"boot test {fw} ({report.accel}): login after {login}: "
            f"{'OK' if report.ok else 'FAILED'}")
        if not report.ok:
            raise BootTestError(f"boot test of {path} under {fw} failed: {report.error}\n"
                                f"last console output:\n{report.console_tail[-2000:]}")
        reports.append(report)
    return reports
