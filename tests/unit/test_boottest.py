"""The boot test's logic without QEMU: argv, media/firmware choice, KVM decision,
and the serial-console conversation driven by a scripted fake guest."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

from tests.fakes import RecordingRunner
from vmdebootstrap.boot import boottest as bt
from vmdebootstrap.boot import console as bc
from vmdebootstrap.boot import guests, media, qemu
from vmdebootstrap.host.binfmt import host_arch

# ---- a fake guest on the serial console -------------------------------------------------

BOOT_NOISE = (
    "\x1b[2J\x1b[01;01HISOLINUX 6.04\r\n"
    "[    0.000000] Linux version 6.1.0-18-amd64\r\n"
    "[  OK  ] Started \x1b[0;1;39mserial-getty@ttyS0.service\x1b[0m - Serial Getty.\r\n"
    "         Starting systemd-logind.service - User Login Management...\r\n"
    "\r\nDebian GNU/Linux 12 debian ttyS0\r\n\r\n"
)
PROMPT = "debian login: "


class FakeGuest:
    """Feeds canned console output; answers typed lines through ``respond``."""

    def __init__(self, chunks: list[str], respond: Callable[[FakeGuest, str], str | None],
                 close_when_empty: bool = False) -> None:
        self.queue = [c.encode() for c in chunks]
        self.respond = respond
        self.now = 0.0
        self.typed: list[str] = []
        self.close_when_empty = close_when_empty

    def clock(self) -> float:
        return self.now

    def read(self, timeout: float) -> bytes | None:
        self.now += 0.5
        if self.queue:
            return self.queue.pop(0)
        if self.close_when_empty:
            return b""
        self.now += timeout
        return None

    def write(self, data: bytes) -> None:
        line = data.decode().removesuffix("\n")
        self.typed.append(line)
        answer = self.respond(self, line)
        if answer:
            self.queue.append(answer.encode())

    def console(self, echo: io.StringIO | None = None) -> bc.Console:
        return bc.Console(self.read, self.write, echo=echo, clock=self.clock)


def debian_guest(password: str = "live", *, rc: int = 0, echo_input: bool = False,
                 output: str = "12.5\r\nsudo-ok\r\n") -> Callable[[FakeGuest, str], str | None]:
    state = {"pw_for_read": False}

    def respond(guest: FakeGuest, line: str) -> str | None:
        echoed = line + "\r\n" if echo_input else ""
        if line == "user":
            return "user\r\nPassword: "
        if line == password and state["pw_for_read"]:
            state["pw_for_read"] = False
            return "\r\n"
        if line == password:
            return "\r\n[   50.1] random: crng init done\r\nLinux debian 6.1.0\r\nuser@debian:~$ "
        if "_READY" in line:
            return echoed + "VMDBT_42_READY\r\nuser@debian:~$ "
        if "read -r PASSWORD" in line:
            state["pw_for_read"] = True
            return echoed + "VMDBT_42_PW:"
        if "_BEGIN" in line:
            return (echoed + "VMDBT_42_BEGIN\r\n" + output +
                    f"VMDBT_42_END_{rc}\r\nuser@debian:~$ ")
        return None
    return respond


def run_session(guest: FakeGuest, *, password: str | None = "live", command: str = "true",
                timeout: float = 600, echo: io.StringIO | None = None) -> bc.Session:
    con = guest.console(echo)
    return bc.login_and_run(con, user="user", password=password, command=command,
                            started=0.0, deadline=timeout)


def test_login_and_run_happy_path() -> None:
    guest = FakeGuest([BOOT_NOISE, PROMPT], debian_guest())
    echo = io.StringIO()
    session = run_session(guest, command=bc.default_command("user"), echo=echo)
    assert session.returncode == 0
    assert session.output == "12.5\nsudo-ok"
    assert 0 < session.seconds_to_login < 600
    assert guest.typed[0] == "user"
    assert guest.typed[1] == "live"
    assert "stty -echo" in guest.typed[2] and "VMDBT_$((6*7))_READY" in guest.typed[2]
    assert "live" not in echo.getvalue()
    assert "\x1b" not in echo.getvalue() and "\r" not in echo.getvalue()
    # the sudo check is inside the wrapped command
    assert "sudo -S" in guest.typed[-1] and "VMDBT_$((6*7))_END_$?" in guest.typed[-1]


def test_echoed_commands_do_not_count_as_markers() -> None:
    guest = FakeGuest([BOOT_NOISE, PROMPT], debian_guest(echo_input=True, rc=3,
                                                          output="boom\r\n"))
    session = run_session(guest)
    assert session.returncode == 3
    assert session.output == "boom"


def test_password_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="vmdebootstrap.boot.boottest")
    guest = FakeGuest([BOOT_NOISE, PROMPT], debian_guest(password="s3cret-pw"))
    run_session(guest, password="s3cret-pw")
    assert "s3cret-pw" not in caplog.text
    assert "********" in caplog.text


def test_password_echoed_by_guest_is_masked() -> None:
    guest_respond = debian_guest(password="s3cret-pw", output="pw is s3cret-pw\r\n")
    session = run_session(FakeGuest([PROMPT], guest_respond), password="s3cret-pw")
    assert session.output == "pw is ********"


def test_login_prompt_split_across_reads_and_escape_split() -> None:
    chunks = [BOOT_NOISE, "\x1b[0", ";1;39m", "deb", "ian log", "in: "]
    session = run_session(FakeGuest(chunks, debian_guest()))
    assert session.returncode == 0


def test_last_login_line_is_not_a_login_prompt() -> None:
    assert not bc.LOGIN.search("Last login: Tue Jan  2 10:00:00 on ttyS0\n")
    assert bc.LOGIN.search("\ndebian-live login: ")
    assert bc.LOGIN.search("login: ")
    # seen under Secure Boot: a kernel message between the host name and the prompt
    assert bc.LOGIN.search("debian-live[  102.668368] powernow_k8: Power state transitions "
                           "not supported\n login: ")


def test_login_incorrect_fails_fast() -> None:
    def respond(guest: FakeGuest, line: str) -> str | None:
        if line == "user":
            return "Password: "
        if line == "wrong":
            return "\r\n\r\nLogin incorrect\r\ndebian login: "
        return None
    guest = FakeGuest([PROMPT], respond)
    with pytest.raises(bc.BootFailed, match="Login incorrect"):
        run_session(guest, password="wrong")
    assert guest.now < 60


def test_forced_password_change_is_reported_unsupported() -> None:
    def respond(guest: FakeGuest, line: str) -> str | None:
        if line == "user":
            return "Password: "
        if line == "":
            return ("You are required to change your password immediately (administrator "
                    "enforced).\r\nChanging password for user.\r\nCurrent password: ")
        return None
    with pytest.raises(bc.BootFailed, match="not supported"):
        run_session(FakeGuest([PROMPT], respond), password="")


def test_password_prompt_without_password_fails() -> None:
    with pytest.raises(bc.BootFailed, match="none was given"):
        run_session(FakeGuest([PROMPT], debian_guest()), password=None)


def test_account_without_password_prompt() -> None:
    def respond(guest: FakeGuest, line: str) -> str | None:
        if line == "user":
            return "user\r\nLinux debian\r\n$ "
        return debian_guest()(guest, line)
    session = run_session(FakeGuest([PROMPT], respond), password=None)
    assert session.returncode == 0


def test_reprinted_login_prompt_gets_the_name_again() -> None:
    state = {"n": 0}

    def respond(guest: FakeGuest, line: str) -> str | None:
        if line == "user":
            state["n"] += 1
            if state["n"] == 1:
                return "\r\n[  12.0] systemd[1]: hostname changed\r\ndebian login: "
        return debian_guest()(guest, line)
    guest = FakeGuest([PROMPT], respond)
    assert run_session(guest).returncode == 0
    assert state["n"] == 2
    assert guest.typed[:3] == ["user", "user", "live"]


def test_kernel_panic_is_reported() -> None:
    chunks = [BOOT_NOISE, "[    2.0] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n"]
    with pytest.raises(bc.BootFailed, match="Kernel panic - not syncing: VFS"):
        run_session(FakeGuest(chunks, debian_guest()))


def test_live_boot_failure_is_reported() -> None:
    chunks = ["Unable to find a medium containing a live file system\r\n",
              "BusyBox v1.35.0\r\n(initramfs) "]
    with pytest.raises(bc.BootFailed, match="live file system"):
        run_session(FakeGuest(chunks, debian_guest()))


def test_timeout_without_login_prompt() -> None:
    guest = FakeGuest([BOOT_NOISE], debian_guest())
    with pytest.raises(bc.BootFailed, match="timed out waiting for the login prompt"):
        run_session(guest, timeout=120)
    assert 120 <= guest.now < 125


def test_qemu_exit_closes_console() -> None:
    with pytest.raises(bc.ConsoleClosed):
        run_session(FakeGuest([BOOT_NOISE], debian_guest(), close_when_empty=True))


def test_console_expect_consumes_text() -> None:
    guest = FakeGuest(["one two one"], lambda g, s: None)
    con = guest.console()
    pat = re.compile("one")
    first = con.expect([pat], 5)
    second = con.expect([pat], 5)
    assert first and second and first[1].start() < second[1].start()
    assert con.expect([pat], 5) is None


def test_console_keeps_buffer_bounded() -> None:
    guest = FakeGuest(["x" * 200_000, "y" * 200_000, "END"], lambda g, s: None)
    con = guest.console()
    assert con.expect([re.compile("END")], 10)
    assert len(con.text) <= 256 * 1024


# ---- media, firmware and argv -----------------------------------------------------------


def mbr(types: list[int], boot_code: bool) -> bytearray:
    sector = bytearray(512 * 128)
    if boot_code:
        sector[0:3] = b"\xeb\x63\x90"
    for i, t in enumerate(types):
        sector[446 + 16 * i + 4] = t
    sector[510:512] = b"\x55\xaa"
    return sector


def iso_bytes() -> bytes:
    """The start of an ISO 9660 image that is not hybrid: no partition table."""
    head = bytearray(0x8800)
    head[0x8000:0x8006] = b"\x01CD001"
    return bytes(head)


def gpt_disk(esp: bool, boot_code: bool) -> bytes:
    disk = mbr([0xEE], boot_code)
    disk[512:520] = b"EFI PART"
    disk[512 + 72:512 + 80] = (2).to_bytes(8, "little")
    disk[512 + 80:512 + 84] = (128).to_bytes(4, "little")
    disk[512 + 84:512 + 88] = (128).to_bytes(4, "little")
    linux = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4").bytes_le
    disk[1024:1040] = linux
    if esp:
        disk[1024 + 128:1024 + 144] = media.ESP_TYPE_GUID
    return bytes(disk)


def test_detect_media() -> None:
    assert media.detect_media(Path("x.iso"), b"\0" * 64) == "iso"
    assert media.detect_media(Path("X.ISO"), b"\0" * 64) == "iso"
    assert media.detect_media(Path("x.img"), b"\0" * 64) == "raw"
    assert media.detect_media(Path("x.img"), b"QFI\xfb" + b"\0" * 60) == "qcow2"
    assert media.detect_media(Path("x.qcow2"), b"QFI\xfb") == "qcow2"


def test_disk_firmwares() -> None:
    assert media.disk_firmwares(b"") == ["bios"]
    assert media.disk_firmwares(bytes(mbr([0x83], boot_code=True))) == ["bios"]
    assert media.disk_firmwares(bytes(mbr([0xEF, 0x83], boot_code=False))) == ["uefi"]
    assert media.disk_firmwares(gpt_disk(esp=True, boot_code=False)) == ["uefi"]
    assert media.disk_firmwares(gpt_disk(esp=True, boot_code=True)) == ["bios", "uefi"]
    assert media.disk_firmwares(gpt_disk(esp=False, boot_code=True)) == ["bios"]
    # a hybrid ISO written to a disk: isohybrid MBR code plus an 0xEF partition
    assert media.disk_firmwares(bytes(mbr([0x00, 0xEF], boot_code=True))) == ["bios", "uefi"]


def test_default_firmwares() -> None:
    assert media.default_firmwares("iso", "amd64", b"") == ["bios", "uefi"]
    assert media.default_firmwares("iso", "arm64", b"") == ["uefi"]
    assert media.default_firmwares("raw", "amd64", b"") == ["bios"]


def test_find_uefi_firmware_prefers_split_4m() -> None:
    present = {"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd",
               "/usr/share/ovmf/OVMF.fd"}
    assert guests.find_uefi_firmware("amd64", present.__contains__) == (
        "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd")
    assert guests.find_uefi_firmware("amd64", {"/usr/share/ovmf/OVMF.fd"}.__contains__) == (
        "/usr/share/ovmf/OVMF.fd", None)
    assert guests.find_uefi_firmware("arm64", set().__contains__) is None


def _plan(**kw: object) -> qemu.QemuPlan:
    base: dict[str, object] = {"arch": "amd64", "firmware": "bios", "accel": "tcg",
                               "media": "iso", "image": Path("/i/live.iso")}
    base.update(kw)
    return qemu.QemuPlan(**base)  # type: ignore[arg-type]


def test_qemu_argv_bios_iso() -> None:
    argv = qemu.qemu_argv(_plan())
    line = " ".join(argv)
    assert argv[0] == "qemu-system-x86_64"
    assert "-accel tcg,thread=multi -cpu max" in line
    for opt in ("-snapshot", "-no-reboot", "-nodefaults", "-serial stdio", "-m 1024",
                "-smp 2", "-display none"):
        assert opt in line
    assert "-drive media=cdrom,readonly=on,format=raw,file=/i/live.iso" in line
    assert "pflash" not in line


def test_qemu_argv_uefi_disk_split_firmware() -> None:
    argv = qemu.qemu_argv(_plan(firmware="uefi", media="raw", image=Path("/i/d,1.img"),
                              accel="kvm", uefi_code="/usr/share/OVMF/OVMF_CODE_4M.fd",
                              uefi_vars=Path("/t/vars.fd")))
    line = " ".join(argv)
    assert "-accel kvm -cpu host" in line
    assert ("-drive if=pflash,format=raw,unit=0,readonly=on,"
            "file=/usr/share/OVMF/OVMF_CODE_4M.fd") in line
    assert "-drive if=pflash,format=raw,unit=1,file=/t/vars.fd" in line
    assert "-drive if=virtio,format=raw,file=/i/d,,1.img" in line


def test_qemu_argv_uefi_combined_firmware_and_qcow2() -> None:
    argv = qemu.qemu_argv(_plan(firmware="uefi", media="qcow2", image=Path("/i/d.qcow2"),
                              uefi_vars=Path("/t/OVMF.fd")))
    line = " ".join(argv)
    assert "-drive if=pflash,format=raw,unit=0,file=/t/OVMF.fd" in line
    assert "readonly=on,file=/t/OVMF.fd" not in line
    assert "-drive if=virtio,format=qcow2,file=/i/d.qcow2" in line


def test_qemu_argv_i386_and_arm64() -> None:
    assert qemu.qemu_argv(_plan(arch="i386"))[0] == "qemu-system-i386"
    argv = qemu.qemu_argv(_plan(arch="arm64", firmware="uefi", uefi_code="/A/CODE.fd",
                              uefi_vars=Path("/t/v.fd")))
    assert argv[0] == "qemu-system-aarch64"
    assert argv[argv.index("-machine") + 1] == "virt"
    assert "scsi-cd,drive=cd0" in argv
    with pytest.raises(bt.BootTestError, match="UEFI"):
        qemu.qemu_argv(_plan(arch="arm64"))


def test_qemu_argv_uefi_needs_vars() -> None:
    with pytest.raises(bt.BootTestError):
        qemu.qemu_argv(_plan(firmware="uefi"))


def test_password_never_in_qemu_argv() -> None:
    argv = qemu.qemu_argv(_plan(firmware="uefi", uefi_code="/c", uefi_vars=Path("/v")))
    assert not any(a == "live" or "PASSWORD" in a for a in argv)


def test_probe_argv() -> None:
    uefi = qemu.probe_argv("amd64", ("/c.fd", "/v.fd"), Path("/t/v.fd"))
    assert "-accel" in uefi and uefi[uefi.index("-accel") + 1] == "kvm"
    assert any("pflash" in a for a in uefi)
    assert not any("cdrom" in a or "virtio" in a for a in uefi)
    seabios = qemu.probe_argv("amd64", None, Path("/t/v.fd"))
    assert "isa-debugcon,iobase=0x402,chardev=dbg" in seabios


# ---- KVM decision -----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _clear_kvm_cache() -> None:
    qemu._KVM_CACHE.clear()


def test_accel_forced() -> None:
    assert qemu.choose_accel("tcg", "amd64", probe=lambda a: pytest.fail("probed")) == "tcg"
    assert qemu.choose_accel("kvm", "amd64", probe=lambda a: pytest.fail("probed")) == "kvm"
    with pytest.raises(bt.BootTestError):
        qemu.choose_accel("hax", "amd64")


def test_accel_auto_uses_probe_result_and_caches_it() -> None:
    calls: list[str] = []

    def probe(arch: str) -> bool:
        calls.append(arch)
        return False

    kw = {"host": "amd64", "kvm_device_ok": True, "probe": probe}
    assert qemu.choose_accel("auto", "amd64", **kw) == "tcg"  # type: ignore[arg-type]
    assert qemu.choose_accel("auto", "amd64", **kw) == "tcg"  # type: ignore[arg-type]
    assert calls == ["amd64"]
    qemu._KVM_CACHE.clear()
    assert qemu.choose_accel("auto", "amd64", host="amd64", kvm_device_ok=True,
                           probe=lambda a: True) == "kvm"


def test_accel_auto_without_kvm_device_or_foreign_arch_does_not_probe() -> None:
    never: Callable[[str], bool] = lambda a: pytest.fail("probed")  # noqa: E731
    assert qemu.choose_accel("auto", "amd64", host="amd64", kvm_device_ok=False,
                           probe=never) == "tcg"
    assert qemu.choose_accel("auto", "arm64", host="amd64", kvm_device_ok=True,
                           probe=never) == "tcg"
    assert qemu.kvm_candidate("i386", "amd64", True)


# ---- options and main -------------------------------------------------------------------


def test_serial_console_per_arch() -> None:
    assert guests.serial_console("amd64") == "ttyS0"
    assert guests.serial_console("i386") == "ttyS0"
    assert guests.serial_console("arm64") == "ttyAMA0"
    assert set(guests.SERIAL_CONSOLES) == set(guests.QEMU_BINARIES)


@pytest.mark.parametrize(("arch", "tty"), [("amd64", "ttyS0"), ("arm64", "ttyAMA0")])
def test_no_login_prompt_names_the_serial_console(arch: str, tty: str) -> None:
    con = FakeGuest([BOOT_NOISE], debian_guest()).console()
    report = bt.BootReport("uefi", "tcg", None, "", False)
    bt._converse(con, report, arch=arch, user=None, password=None, command=None,
                 started=time.monotonic(), timeout=30)
    assert not report.ok
    assert report.error == f"no login prompt on {tty}"


def test_parse_user() -> None:
    assert bt.parse_user("user/live") == ("user", "live")
    assert bt.parse_user("user/") == ("user", "")
    assert bt.parse_user("root") == ("root", None)
    assert bt.parse_user("user/a/b") == ("user", "a/b")
    with pytest.raises(bt.BootTestError):
        bt.parse_user("Bad User/x")


def test_default_command() -> None:
    assert bc.default_command("root") == "cat /etc/debian_version"
    cmd = bc.default_command("user")
    assert cmd.startswith("cat /etc/debian_version && ")
    assert "sudo -n true" in cmd and '"$PASSWORD"' in cmd and "sudo -S" in cmd
    assert 'test "$(sudo -n id -u)" = 0' in cmd


def test_parse_args_defaults() -> None:
    args = bt.parse_args(["x.iso"])
    assert args.file == Path("x.iso")
    assert args.firmware is None and args.accel == "auto"
    assert args.timeout == 600 and args.memory == 1024
    assert args.arch == host_arch() or args.arch in guests.QEMU_BINARIES
    args = bt.parse_args(["d.img", "--firmware", "uefi", "--user", "u/p", "--accel", "tcg",
                          "--command", "true", "-v", "--timeout", "30", "--media", "raw"])
    assert (args.firmware, args.user, args.accel, args.command, args.verbose,
            args.timeout, args.media) == ("uefi", "u/p", "tcg", "true", True, 30.0, "raw")
    with pytest.raises(SystemExit):
        bt.parse_args(["x.iso", "--firmware", "coreboot"])


def test_unknown_host_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("platform.machine", lambda: "vax")
    assert bt.parse_args(["x.iso"]).arch is None
    assert qemu.choose_accel("auto", "amd64", kvm_device_ok=True,
                             probe=lambda a: pytest.fail("probed")) == "tcg"
    image = tmp_path / "live.iso"
    image.write_bytes(iso_bytes())
    assert bt.main([str(image)]) == 1
    assert "unknown host machine type 'vax'" in capsys.readouterr().err


def test_main_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    assert bt.main([str(tmp_path / "nope.iso")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # the handlers main installed are gone again
    assert {sig: signal.getsignal(sig) for sig in before} == before


@pytest.fixture
def tools_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """main's check for QEMU and firmware passes, whatever this host has."""
    monkeypatch.setattr(bt, "missing_boot_tools", lambda arch, firmwares: [])


@pytest.mark.usefixtures("tools_installed")
def test_main_boots_each_firmware(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "live.iso"
    image.write_bytes(iso_bytes())
    seen: list[tuple[str, str | None]] = []

    def fake_boot_test(path: Path, **kw: object) -> bt.BootReport:
        seen.append((str(kw["firmware"]), kw["password"]))  # type: ignore[arg-type]
        ok = kw["firmware"] == "bios"
        return bt.BootReport(str(kw["firmware"]), "tcg", 42.0 if ok else None,
                             "12.5" if ok else "", ok, error=None if ok else "timed out")

    monkeypatch.setattr(bt, "boot_test", fake_boot_test)
    assert bt.main([str(image), "--user", "user/live"]) == 1
    out, err = capsys.readouterr()
    assert seen == [("bios", "live"), ("uefi", "live")]
    assert "bios (tcg): login after 42.0 s: OK" in out and "12.5" in out
    assert "uefi (tcg): login after never: FAILED" in out
    assert "timed out" in err
    seen.clear()
    assert bt.main([str(image), "--firmware", "bios"]) == 0
    assert seen == [("bios", None)]


@pytest.mark.usefixtures("tools_installed")
def test_main_starts_the_installer_under_each_firmware(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from vmdebootstrap.boot.installer import InstallerReport

    image = tmp_path / "live.iso"
    image.write_bytes(iso_bytes())
    seen: list[str] = []

    def fake_start(path: Path, **kw: object) -> InstallerReport:
        seen.append(str(kw["firmware"]))
        if kw["firmware"] == "bios":
            return InstallerReport(ok=True, seconds_to_question=50.0,
                                   question="[!!] Select a language")
        return InstallerReport(error="the boot menu never showed an Install entry",
                               console_tail="BdsDxe: ...")

    monkeypatch.setattr(bt, "start_installer", fake_start)
    monkeypatch.setattr(bt, "boot_test", None)  # never logs in
    assert bt.main([str(image), "--installer", "--firmware", "both"]) == 1
    out, err = capsys.readouterr()
    assert seen == ["bios", "uefi"]
    assert "bios: the installer asks '[!!] Select a language' after 50.0 s: OK" in out
    assert "uefi: the boot menu never showed an Install entry" in err
    disk = tmp_path / "disk.img"
    disk.write_bytes(mbr([0x83], boot_code=True))
    assert bt.main([str(disk), "--installer"]) == 2
    assert "--installer: " in capsys.readouterr().err and seen == ["bios", "uefi"]


def test_boot_test_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(bt.BootTestError, match="does not exist"):
        bt.boot_test(tmp_path / "x.iso", firmware="bios", arch="amd64", user=None,
                     password=None, command=None, timeout=1)
    (tmp_path / "x.iso").write_bytes(iso_bytes())
    with pytest.raises(bt.BootTestError, match="firmware"):
        bt.boot_test(tmp_path / "x.iso", firmware="coreboot", arch="amd64", user=None,
                     password=None, command=None, timeout=1)


# ---- QEMU never outlives the test -------------------------------------------------------


def test_qemu_context_kills_whole_process_group() -> None:
    pidfile_cmd = ["sh", "-c", "sleep 300 & echo $!; exec sleep 300"]
    with qemu.qemu_running(pidfile_cmd) as proc:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
    assert proc.poll() is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the background child survived")


def test_qemu_context_kills_on_interrupt() -> None:
    with pytest.raises(KeyboardInterrupt), qemu.qemu_running(["sleep", "300"]) as proc:
        raise KeyboardInterrupt
    assert proc.poll() is not None


def test_disk_header_decodes_qcow2_with_qemu_img(tmp_path: Path) -> None:
    from tests.fakes import RecordingRunner

    image = tmp_path / "d.qcow2"
    image.write_bytes(b"QFI\xfb" + b"\0" * 100)
    runner = RecordingRunner()
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed")
    assert media.disk_header(image, "qcow2", runner) == b""
    argv = runner.calls[0]
    assert argv[:6] == ["qemu-img", "dd", "-f", "qcow2", "-O", "raw"]
    assert f"if={image}" in argv
    raw = tmp_path / "d.img"
    raw.write_bytes(b"\x55" * 10)
    assert media.disk_header(raw, "raw", runner) == b"\x55" * 10


def test_qemu_context_kills_when_a_signal_arrives_while_it_starts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Hup(Exception):
        pass

    def raise_hup(signum: int, frame: FrameType | None) -> None:
        raise Hup

    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def popen(*args: object, **kw: object) -> subprocess.Popen[bytes]:
        proc = real_popen(*args, **kw)  # type: ignore[call-overload]
        started.append(proc)
        os.kill(os.getpid(), signal.SIGHUP)  # before Popen has even returned
        time.sleep(0.01)
        return proc

    monkeypatch.setattr(qemu.subprocess, "Popen", popen)
    old = signal.signal(signal.SIGHUP, raise_hup)
    try:
        with pytest.raises(Hup), qemu.qemu_running(["sleep", "300"]):
            pytest.fail("the signal should have stopped the boot before it began")
    finally:
        signal.signal(signal.SIGHUP, old)
    assert len(started) == 1 and started[0].poll() is not None


def test_scratch_dir_is_removed_on_interrupt() -> None:
    with pytest.raises(KeyboardInterrupt), qemu.scratch_dir() as tmp:
        (tmp / "efivars.fd").write_bytes(b"vars")
        raise KeyboardInterrupt
    assert not tmp.exists()


# ---- the command line stops cleanly on SIGINT, SIGTERM and SIGHUP -------------------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.fixture
def fake_qemu(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """An environment whose qemu-system-x86_64 writes its pid and a
    background child's pid to a file, then waits; and that file."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    pids = tmp_path / "qemu.pids"
    qemu_bin = bindir / "qemu-system-x86_64"
    qemu_bin.write_text(f"#!/bin/sh\nsleep 300 &\necho $$ $! > {pids}.new\n"
                        f"mv {pids}.new {pids}\nwait\n")
    qemu_bin.chmod(0o755)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    src = Path(bt.__file__).parents[2]
    env = dict(os.environ, PATH=f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               TMPDIR=str(scratch), PYTHONPATH=str(src))
    yield env, pids
    if pids.exists():  # never leave a sleeper behind, whatever the test said
        for pid in pids.read_text().split():
            if _alive(int(pid)):
                os.kill(int(pid), signal.SIGKILL)


@pytest.mark.parametrize(("sig", "status"), [
    (signal.SIGHUP, 129), (signal.SIGTERM, 143), (signal.SIGINT, 130),
])
def test_signal_to_boottest_stops_qemu_and_exits_128_plus_signal(
        tmp_path: Path, fake_qemu: tuple[dict[str, str], Path],
        sig: signal.Signals, status: int) -> None:
    env, pids_file = fake_qemu
    image = tmp_path / "live.iso"
    image.write_bytes(iso_bytes())
    code = "import sys; from vmdebootstrap.boot.boottest import main; sys.exit(main())"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(image), "--arch", "amd64", "--firmware", "bios",
         "--accel", "tcg", "--timeout", "120"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not pids_file.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the fake QEMU never started"
            time.sleep(0.05)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == status, err
    assert b"interrupted" in err
    pids = [int(p) for p in pids_file.read_text().split()]
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "QEMU or its child survived"
    assert list((tmp_path / "tmp").iterdir()) == []  # the scratch directory is gone


# ---- Secure Boot (uefi-sb) ---------------------------------------------------------------

OVMF_REFUSAL = (
    "BdsDxe: loading Boot0001 \"UEFI QEMU DVD-ROM QM00001 \" from PciRoot(0x0)/Pci(0x1F,0x2)\r\n"
    "BdsDxe: failed to load Boot0001 \"UEFI QEMU DVD-ROM QM00001 \" from "
    "PciRoot(0x0)/Pci(0x1F,0x2)/Sata(0x0,0xFFFF,0x0): Access Denied\r\n"
)


def test_find_uefi_firmware_with_secure_boot() -> None:
    present = {"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd",
               "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"}
    assert guests.find_uefi_firmware("amd64", present.__contains__, secure_boot=True) == (
        "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
    # the plain variable store has no keys enrolled: not Secure Boot
    assert guests.find_uefi_firmware("amd64", (present - {"/usr/share/OVMF/OVMF_VARS_4M.ms.fd"})
                                   .__contains__, secure_boot=True) is None
    assert guests.find_uefi_firmware("arm64", present.__contains__, secure_boot=True) is None


def test_uefi_vars_copy_names_what_to_install(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qemu.os.path, "isfile", lambda f: False)
    with pytest.raises(bt.BootTestError, match=r"Secure Boot for amd64 \("
                       r"/usr/share/OVMF/OVMF_CODE_4M\.secboot\.fd with .*: install the ovmf"):
        qemu.uefi_vars_copy("amd64", tmp_path, secure_boot=True)


def test_qemu_argv_uefi_sb() -> None:
    argv = qemu.qemu_argv(_plan(firmware="uefi-sb",
                              uefi_code="/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
                              uefi_vars=Path("/t/efivars.fd")))
    line = " ".join(argv)
    assert argv[argv.index("-machine") + 1] == "q35,smm=on"
    assert "-global driver=cfi.pflash01,property=secure,value=on" in line
    assert ("-drive if=pflash,format=raw,unit=0,readonly=on,"
            "file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd") in line
    assert "-drive if=pflash,format=raw,unit=1,file=/t/efivars.fd" in line
    plain = qemu.qemu_argv(_plan(firmware="uefi", uefi_code="/c", uefi_vars=Path("/v")))
    assert plain[plain.index("-machine") + 1] == "q35" and "-global" not in plain
    with pytest.raises(bt.BootTestError, match="firmware must be one of"):
        qemu.qemu_argv(_plan(firmware="coreboot"))


def test_default_firmwares_add_secure_boot_for_a_signed_iso() -> None:
    assert media.default_firmwares("iso", "amd64", b"", signed=True) == [
        "bios", "uefi", "uefi-sb"]
    # AAVMF with Microsoft's keys enforces Secure Boot on arm64 guests
    assert media.default_firmwares("iso", "arm64", b"", signed=True) == ["uefi", "uefi-sb"]
    assert media.default_firmwares("iso", "arm64", b"", signed=False) == ["uefi"]
    assert media.default_firmwares("raw", "amd64", b"", signed=True) == ["bios"]


def pe_head(*, pe32plus: bool = True, cert_size: int = 0) -> bytes:
    head = bytearray(1024)
    head[:2] = b"MZ"
    head[0x3C:0x40] = (0x80).to_bytes(4, "little")
    head[0x80:0x84] = b"PE\0\0"
    optional = 0x80 + 24
    head[optional:optional + 2] = (0x20B if pe32plus else 0x10B).to_bytes(2, "little")
    entry = optional + (112 if pe32plus else 96) + 4 * 8
    head[entry:entry + 8] = (0x1000).to_bytes(4, "little") + cert_size.to_bytes(4, "little")
    return bytes(head)


def test_pe_signed() -> None:
    assert media.pe_signed(pe_head(cert_size=1472))
    assert media.pe_signed(pe_head(pe32plus=False, cert_size=8))
    assert not media.pe_signed(pe_head())
    assert not media.pe_signed(b"\x7fELF" + bytes(1020))
    assert not media.pe_signed(pe_head(cert_size=1)[:200])  # cut short


def gpt_header(esp_lba: int) -> bytes:
    """The first sectors of a GPT disk whose first partition is an ESP."""
    head = bytearray(64 * 1024)
    head[446 + 4] = 0xEE
    head[510:512] = b"\x55\xaa"
    head[512:520] = b"EFI PART"
    head[512 + 72:512 + 80] = (2).to_bytes(8, "little")   # entries at LBA 2
    head[512 + 80:512 + 84] = (128).to_bytes(4, "little")
    head[512 + 84:512 + 88] = (128).to_bytes(4, "little")
    head[1024:1040] = media.ESP_TYPE_GUID
    head[1024 + 32:1024 + 40] = esp_lba.to_bytes(8, "little")
    return bytes(head)


def test_esp_offset() -> None:
    assert media.esp_offset(gpt_header(2048)) == 2048 * 512
    mbr = bytearray(512)
    mbr[510:512] = b"\x55\xaa"
    mbr[446 + 16 + 4] = 0xEF
    mbr[446 + 16 + 8:446 + 16 + 12] = (4096).to_bytes(4, "little")
    assert media.esp_offset(bytes(mbr)) == 4096 * 512
    mbr[446 + 16 + 4] = 0x83
    assert media.esp_offset(bytes(mbr)) is None
    assert media.esp_offset(b"") is None


class Extract(RecordingRunner):
    def run(self, argv, **kw):  # type: ignore[no-untyped-def]
        result = super().run(argv, **kw)
        Path(argv[-1]).write_bytes(pe_head(cert_size=100))
        return result


def test_efi_loader_signed_reads_isos_and_raw_disks(tmp_path: Path) -> None:
    runner = Extract()
    assert media.efi_loader_signed(tmp_path / "l.iso", "iso", "amd64", runner) == (
        shutil.which("xorriso") is not None)
    if runner.calls:
        assert runner.calls[0][:4] == ["xorriso", "-osirrox", "on", "-indev"]
        assert "/EFI/boot/bootx64.efi" in runner.calls[0]
    disk = tmp_path / "d.img"
    disk.write_bytes(gpt_header(2048))
    runner = Extract()
    assert media.efi_loader_signed(disk, "raw", "amd64", runner) == (
        shutil.which("mcopy") is not None)
    if runner.calls:  # read from the ESP at its offset, with no loop device or mount
        assert runner.calls[0] == ["mcopy", "-n", "-i", f"{disk}@@{2048 * 512}",
                                   "::/EFI/boot/bootx64.efi", runner.calls[0][-1]]
    assert not media.efi_loader_signed(disk, "qcow2", "amd64", Extract())
    disk.write_bytes(bytes(64 * 1024))  # no partition table, no ESP
    runner = Extract()
    assert not media.efi_loader_signed(disk, "raw", "amd64", runner) and not runner.calls


def test_a_signed_uefi_disk_is_also_booted_with_secure_boot() -> None:
    header = gpt_header(2048)
    assert media.default_firmwares("raw", "amd64", header, signed=True) == ["uefi", "uefi-sb"]
    assert media.default_firmwares("raw", "amd64", header) == ["uefi"]
    bios_only = bytearray(512)
    bios_only[0], bios_only[510:512] = 0xEB, b"\x55\xaa"
    assert media.default_firmwares("raw", "amd64", bytes(bios_only), signed=True) == ["bios"]


def test_refused_loader_is_named_as_such() -> None:
    guest = FakeGuest([OVMF_REFUSAL], debian_guest())
    with pytest.raises(bc.BootFailed) as info:
        run_session(guest)
    assert "the firmware refused the boot loader (Secure Boot): BdsDxe: failed to load " \
           "Boot0001" in str(info.value)
    assert str(info.value).endswith("Access Denied")
    shim = "Verification failed: (0x1A) Security Violation\r\n"
    with pytest.raises(bc.BootFailed, match="the firmware refused the boot loader"):
        run_session(FakeGuest([shim], debian_guest()))


def test_secure_boot_state() -> None:
    assert bc.secure_boot_state("   6   0   0   0   1\n") == "enabled"
    assert bc.secure_boot_state("od -An ...\r\n   6   0   0   0   0") == "disabled"
    assert bc.secure_boot_state("od: /sys/firmware/efi/efivars/SecureBoot-8be4df61: "
                                "No such file or directory") == "unknown"


def secure_guest(value: str) -> Callable[[FakeGuest, str], str | None]:
    inner = debian_guest()

    def respond(guest: FakeGuest, line: str) -> str | None:
        if bc.SECURE_BOOT_VAR in line:
            return f"VMDBT_42_BEGIN\r\n{value}\r\nVMDBT_42_END_0\r\nuser@debian:~$ "
        return inner(guest, line)
    return respond


@pytest.mark.parametrize(("value", "state", "ok"), [
    ("   6   0   0   0   1", "enabled", True), ("   6   0   0   0   0", "disabled", False),
    ("od: No such file or directory", "unknown", False)])
def test_uefi_sb_reads_the_secure_boot_variable(value: str, state: str, ok: bool) -> None:
    guest = FakeGuest([BOOT_NOISE, PROMPT], secure_guest(value))
    report = bt.BootReport("uefi-sb", "tcg", None, "", False)
    bt._converse(guest.console(), report, arch="amd64", user="user", password="live",
                 command=None, started=0.0, timeout=600)
    assert report.secure_boot == state and report.ok is ok
    assert report.command_output == "12.5\nsudo-ok"
    assert bc.SECURE_BOOT_PROBE in guest.typed[-1]
    if not ok:
        assert report.error == ("the guest booted but does not report Secure Boot enabled "
                                f"(its SecureBoot EFI variable: {state})")


def test_uefi_sb_without_a_user_goes_by_the_kernel() -> None:
    said = "[    0.000000] secureboot: Secure boot enabled\r\n"
    report = bt.BootReport("uefi-sb", "tcg", None, "", False)
    bt._converse(FakeGuest([said, BOOT_NOISE, PROMPT], debian_guest()).console(), report,
                 arch="amd64", user=None, password=None, command=None, started=0.0,
                 timeout=600)
    assert report.ok and report.secure_boot == "enabled"
    report = bt.BootReport("uefi-sb", "tcg", None, "", False)
    bt._converse(FakeGuest([BOOT_NOISE, PROMPT], debian_guest()).console(), report,
                 arch="amd64", user=None, password=None, command=None, started=0.0,
                 timeout=600)
    assert not report.ok and report.secure_boot == "unknown"
    assert report.error and "log in with --user" in report.error


def test_plain_uefi_does_not_ask_about_secure_boot() -> None:
    guest = FakeGuest([BOOT_NOISE, PROMPT], debian_guest())
    report = bt.BootReport("uefi", "tcg", None, "", False)
    bt._converse(guest.console(), report, arch="amd64", user="user", password="live",
                 command=None, started=0.0, timeout=600)
    assert report.ok and report.secure_boot is None
    assert not any(bc.SECURE_BOOT_VAR in line for line in guest.typed)


@pytest.mark.usefixtures("tools_installed")
def test_firmware_choices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    assert bt.parse_args(["x.iso", "--firmware", "uefi-sb"]).firmware == "uefi-sb"
    image = tmp_path / "live.iso"
    image.write_bytes(iso_bytes())
    seen: list[str] = []

    def fake_boot_test(path: Path, **kw: object) -> bt.BootReport:
        seen.append(str(kw["firmware"]))
        return bt.BootReport(str(kw["firmware"]), "tcg", 1.0, "", True,
                             secure_boot="enabled" if kw["firmware"] == "uefi-sb" else None)

    monkeypatch.setattr(bt, "boot_test", fake_boot_test)
    monkeypatch.setattr(bt, "efi_loader_signed", lambda *a: True)
    assert bt.main([str(image), "--firmware", "all"]) == 0
    assert seen == ["bios", "uefi", "uefi-sb", "uefi32"]  # all an amd64 guest boots under
    assert "uefi-sb: the guest reports Secure Boot enabled" in capsys.readouterr().out
    seen.clear()
    assert bt.main([str(image)]) == 0  # a signed ISO: uefi-sb too, by default
    assert seen == ["bios", "uefi", "uefi-sb"]
    seen.clear()
    monkeypatch.setattr(bt, "efi_loader_signed", lambda *a: False)
    assert bt.main([str(image), "--firmware", "both"]) == 0
    assert bt.main([str(image)]) == 0
    assert seen == ["bios", "uefi", "bios", "uefi"]
