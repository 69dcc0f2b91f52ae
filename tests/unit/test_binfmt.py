from __future__ import annotations

import re
from pathlib import Path

import pytest

from vmdebootstrap.errors import UsageError, VmdebootstrapError
from vmdebootstrap.host.binfmt import (
    BINFMT_DIR,
    QEMU_NAMES,
    VALID_ARCHES,
    BinfmtEntry,
    ForeignSetup,
    binfmt_mounted,
    check_foreign,
    host_arch,
    native_arches,
    parse_entry,
    read_entry,
    valid_arches,
)

# As the kernel shows /proc/sys/fs/binfmt_misc/qemu-aarch64 on a Debian host.
AARCH64 = """\
enabled
interpreter {interp}
flags: {flags}
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""


def make_binfmt(tmp_path: Path, entries: dict[str, str], status: bool = True) -> Path:
    binfmt = tmp_path / "binfmt_misc"
    binfmt.mkdir()
    if status:
        (binfmt / "status").write_text("enabled\n")
        (binfmt / "register").write_text("")
    for name, text in entries.items():
        (binfmt / name).write_text(text)
    return binfmt


def make_interpreter(tmp_path: Path, mode: int = 0o755) -> Path:
    path = tmp_path / "usr/libexec/qemu-binfmt/aarch64-binfmt-P"
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


@pytest.mark.parametrize(("machine", "arch"), [
    ("x86_64", "amd64"), ("aarch64", "arm64"), ("armv7l", "armhf"), ("i686", "i386"),
    ("ppc64le", "ppc64el"), ("s390x", "s390x"), ("riscv64", "riscv64"),
])
def test_host_arch(machine: str, arch: str) -> None:
    assert host_arch(machine) == arch


def test_host_arch_unknown_machine() -> None:
    with pytest.raises(VmdebootstrapError, match="'vax'"):
        host_arch("vax")


def test_host_arch_of_this_machine() -> None:
    assert host_arch() in VALID_ARCHES


def test_host_arch_is_the_one_the_boot_test_uses() -> None:
    from vmdebootstrap.boot import boottest, qemu

    assert boottest.host_arch is host_arch
    assert qemu.host_arch is host_arch


def test_native_arches() -> None:
    assert native_arches("amd64") == {"amd64", "i386"}
    assert native_arches("arm64") == {"arm64", "armhf", "armel"}
    assert native_arches("riscv64") == {"riscv64"}


def test_constants_agree() -> None:
    assert valid_arches == VALID_ARCHES
    assert set(QEMU_NAMES) == set(VALID_ARCHES)
    assert QEMU_NAMES["arm64"] == "qemu-aarch64"
    assert QEMU_NAMES["armel"] == QEMU_NAMES["armhf"] == "qemu-arm"
    assert QEMU_NAMES["ppc64el"] == "qemu-ppc64le"


def test_parse_entry_real_format() -> None:
    entry = parse_entry("qemu-aarch64", AARCH64.format(
        interp="/usr/libexec/qemu-binfmt/aarch64-binfmt-P", flags="PF"))
    assert entry == BinfmtEntry("qemu-aarch64", True,
                                "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "PF")
    assert entry.fix_binary


def test_parse_entry_disabled_without_flags() -> None:
    entry = parse_entry("qemu-arm", "disabled\ninterpreter /usr/bin/qemu-arm-static\nflags: \n")
    assert not entry.enabled
    assert entry.flags == ""
    assert not entry.fix_binary


def test_parse_entry_empty() -> None:
    assert parse_entry("x", "") == BinfmtEntry("x", False, "", "")


def test_read_entry(tmp_path: Path) -> None:
    binfmt = make_binfmt(tmp_path, {"qemu-aarch64": AARCH64.format(interp="/q", flags="OC")})
    entry = read_entry("qemu-aarch64", binfmt)
    assert entry is not None and entry.interpreter == "/q" and entry.flags == "OC"
    assert read_entry("qemu-arm", binfmt) is None
    assert read_entry("qemu-arm", tmp_path / "missing") is None


def test_binfmt_mounted(tmp_path: Path) -> None:
    assert binfmt_mounted(make_binfmt(tmp_path, {}))
    assert not binfmt_mounted(tmp_path)


@pytest.mark.parametrize(("arch", "host"), [
    ("amd64", "amd64"), ("i386", "amd64"), ("arm64", "arm64"), ("armel", "arm64"),
    ("riscv64", "riscv64"),
])
def test_check_foreign_native(arch: str, host: str, tmp_path: Path) -> None:
    # Native arches never look at binfmt_misc at all.
    assert check_foreign(arch, host, None, tmp_path / "absent") is None


def test_check_foreign_unknown_arch(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        check_foreign("sparc64", "amd64", None, make_binfmt(tmp_path, {}))
    message = str(info.value)
    assert message.startswith("--arch sparc64")
    assert "amd64, arm64" in message


def test_check_foreign_not_mounted(tmp_path: Path) -> None:
    binfmt = make_binfmt(tmp_path, {}, status=False)
    with pytest.raises(UsageError) as info:
        check_foreign("arm64", "amd64", None, binfmt)
    assert str(info.value) == (
        "binfmt_misc is not mounted: run 'mount -t binfmt_misc binfmt_misc "
        "/proc/sys/fs/binfmt_misc' and 'update-binfmts --enable' (package binfmt-support)")


def test_check_foreign_no_entry(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        check_foreign("arm64", "amd64", None, make_binfmt(tmp_path, {}))
    message = str(info.value)
    assert "--arch arm64" in message and "is not registered" in message
    assert "'apt-get install qemu-user-static binfmt-support'" in message
    assert "'update-binfmts --enable qemu-aarch64'" in message


def test_check_foreign_disabled_entry(tmp_path: Path) -> None:
    text = AARCH64.format(interp="/q", flags="PF").replace("enabled", "disabled", 1)
    binfmt = make_binfmt(tmp_path, {"qemu-aarch64": text})
    with pytest.raises(UsageError, match=r"--arch arm64 .*is disabled.*update-binfmts"):
        check_foreign("arm64", "amd64", None, binfmt)


def test_check_foreign_fix_binary(tmp_path: Path) -> None:
    interp = "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"
    binfmt = make_binfmt(tmp_path, {"qemu-aarch64": AARCH64.format(interp=interp, flags="PF")})
    # With F the handler need not exist on disk: the kernel holds it open.
    setup = check_foreign("arm64", "amd64", None, binfmt)
    assert setup == ForeignSetup(
        arch="arm64", entry=BinfmtEntry("qemu-aarch64", True, interp, "PF"),
        handler=Path(interp), copy_to=interp)


def test_check_foreign_without_fix_binary_copies_interpreter(tmp_path: Path) -> None:
    interp = make_interpreter(tmp_path)
    binfmt = make_binfmt(tmp_path, {"qemu-aarch64": AARCH64.format(interp=interp, flags="P")})
    setup = check_foreign("arm64", "amd64", None, binfmt)
    assert setup is not None
    assert setup.handler == interp and setup.copy_to == str(interp)
    assert not setup.entry.fix_binary


def test_check_foreign_without_fix_binary_missing_interpreter(tmp_path: Path) -> None:
    binfmt = make_binfmt(tmp_path, {
        "qemu-arm": AARCH64.format(interp=tmp_path / "gone/qemu-arm", flags="")})
    with pytest.raises(UsageError, match=r"--arch armhf: the qemu-arm interpreter .* missing"):
        check_foreign("armhf", "amd64", None, binfmt)


def test_check_foreign_with_foreign_option(tmp_path: Path) -> None:
    handler = make_interpreter(tmp_path)
    binfmt = make_binfmt(tmp_path, {
        "qemu-aarch64": AARCH64.format(interp="/usr/bin/qemu-aarch64-static", flags="")})
    setup = check_foreign("arm64", "amd64", str(handler), binfmt)
    assert setup is not None
    assert setup.handler == handler
    # The copy goes where the kernel will look for it, whatever the host file is called.
    assert setup.copy_to == "/usr/bin/qemu-aarch64-static"


def test_check_foreign_option_missing(tmp_path: Path) -> None:
    binfmt = make_binfmt(tmp_path, {"qemu-aarch64": AARCH64.format(interp="/q", flags="F")})
    missing = tmp_path / "nope"
    with pytest.raises(UsageError, match=re.escape(f"--foreign {missing}: no such file")):
        check_foreign("arm64", "amd64", str(missing), binfmt)


def test_check_foreign_option_not_executable(tmp_path: Path) -> None:
    # No x bit at all: access(X_OK) fails even for root.
    handler = make_interpreter(tmp_path, mode=0o644)
    binfmt = make_binfmt(tmp_path, {"qemu-aarch64": AARCH64.format(interp="/q", flags="F")})
    with pytest.raises(UsageError, match=re.escape(f"--foreign {handler}: not executable")):
        check_foreign("arm64", "amd64", str(handler), binfmt)


def test_real_host_entry_if_present() -> None:
    entry = read_entry("qemu-aarch64")
    if entry is None:
        pytest.skip("no qemu-aarch64 binfmt entry on this host")
    assert entry.interpreter.startswith("/")
    assert binfmt_mounted(BINFMT_DIR)
