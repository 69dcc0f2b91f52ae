"""The host's tools in a foreign root (vmdebootstrap.host.native): the ELF
interpreter rewrite, path lookups inside the root, what is bound and
undone, and the check that no host program reached an initramfs.  No
root: the runner records the mounts instead of making them."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import pytest

from tests.fakes import RecordingRunner
from vmdebootstrap.host import native, resources


def elf(interp: str, *, wide: bool = True, size: int = 28) -> bytes:
    """A minimal ELF file with one PT_INTERP segment of ``size`` bytes."""
    phoff = 64 if wide else 52
    interp_at = phoff + (56 if wide else 32)
    if wide:
        header = (b"\x7fELF\x02\x01\x01" + b"\0" * 9
                  + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, phoff, 0, 0, 64, 56, 1, 64, 0, 0))
        ph = struct.pack("<IIQQQQQQ", native.PT_INTERP, 4, interp_at, interp_at, interp_at,
                         size, size, 1)
    else:
        header = (b"\x7fELF\x01\x01\x01" + b"\0" * 9
                  + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, 0, phoff, 0, 0, 52, 32, 1, 40, 0, 0))
        ph = struct.pack("<IIIIIIII", native.PT_INTERP, interp_at, interp_at, interp_at,
                         size, size, 4, 1)
    return header + ph + interp.encode().ljust(size, b"\0") + b"code"


@pytest.mark.parametrize("wide", [True, False])
def test_interpreter_is_read_and_rewritten_in_place(wide: bool) -> None:
    data = elf("/lib64/ld-linux-x86-64.so.2", wide=wide)
    offset, size, path = native.elf_interpreter(data) or (0, 0, "")
    assert (size, path) == (28, "/lib64/ld-linux-x86-64.so.2")
    patched = native.with_interpreter(data, native.INTERP)
    assert len(patched) == len(data) and patched.endswith(b"code")
    assert native.elf_interpreter(patched) == (offset, size, "/.vmdbn/ld.so")
    with pytest.raises(ValueError, match="does not fit"):
        native.with_interpreter(elf("/l.so", wide=wide, size=6), native.INTERP)
    assert native.elf_interpreter(b"#!/bin/sh\n") is None


def test_a_real_host_program_gets_the_private_interpreter() -> None:
    real = Path(shutil.which("cp") or "/bin/cp").resolve()
    data = real.read_bytes()
    assert native.elf_interpreter(data) is not None
    assert native.elf_interpreter(native.with_interpreter(data, native.INTERP))[2] == (
        native.INTERP)


def test_root_file_follows_links_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "usr/bin/kmod").write_bytes(b"x")
    (root / "usr/bin/modinfo").symlink_to("/bin/kmod")  # absolute: inside the root
    (root / "usr/bin/sh").symlink_to("dash")  # to nothing
    assert native.root_file(root, "/bin/modinfo") == root / "usr/bin/kmod"
    assert native.root_file(root, "/usr/bin/sh") is None
    assert native.root_file(root, "/usr/bin/none") is None
    (root / "usr/bin/loop").symlink_to("loop")
    assert native.root_file(root, "/usr/bin/loop") is None


def test_no_tool_the_initramfs_copies_is_replaced() -> None:
    for copied in ("kmod", "md5sum", "sha256sum", "busybox", "udevadm", "ldd", "blkid"):
        assert copied not in native.TOOLS


def fake_root(tmp_path: Path, names: tuple[str, ...]) -> Path:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    for name in names:
        (root / "usr/bin" / name).write_bytes(b"\x7fELF target")
    return root


def test_native_tools_binds_and_undoes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = tmp_path / "host"
    host.mkdir()
    linker = host / "ld-linux-x86-64.so.2"
    linker.write_bytes(b"linker")
    programs = {}
    for name in ("cp", "dash", "gzip"):
        programs[name] = host / name
        programs[name].write_bytes(elf(str(linker), size=len(str(linker)) + 1))
    monkeypatch.setattr(native, "host_tools", lambda tools=native.TOOLS: programs)
    monkeypatch.setattr(resources, "unmount_under", lambda *a, **k: [])
    root = fake_root(tmp_path, ("cp", "dash"))  # no gzip in this root
    runner = RecordingRunner()
    with native.native_tools(runner, root) as env:
        assert env == {"LD_LIBRARY_PATH": "/.vmdbn/lib"}
        private = root / ".vmdbn"
        assert (private / "ld.so").readlink() == Path("lib/ld-linux-x86-64.so.2")
        assert native.elf_interpreter((private / "cp").read_bytes())[2] == native.INTERP
        assert not (private / "gzip").exists()
    mounts = [c for c in runner.calls if c[0] == "mount"]
    assert mounts == [
        ["mount", "--bind", "-o", "ro", str(host), str(private / "lib")],
        ["mount", "--bind", str(private / "cp"), str(root / "usr/bin/cp")],
        ["mount", "--bind", str(private / "dash"), str(root / "usr/bin/dash")],
    ]
    assert not private.exists()  # removed, and nothing in the root changed
    assert (root / "usr/bin/cp").read_bytes() == b"\x7fELF target"


def test_native_tools_changes_nothing_where_the_host_cannot_help(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "host_tools", lambda tools=native.TOOLS: {})
    root = fake_root(tmp_path, ("cp",))
    runner = RecordingRunner()
    with native.native_tools(runner, root) as env:
        assert env == {}
    assert runner.calls == [] and not (root / ".vmdbn").exists()


def newc(name: str, data: bytes) -> bytes:
    fields = [0, 0o100644, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
    entry = header + name.encode() + b"\0"
    entry += b"\0" * (-len(entry) % 4)
    return entry + data + b"\0" * (-len(data) % 4)


def archive(*members: tuple[str, bytes]) -> bytes:
    return b"".join(newc(n, d) for n, d in members) + newc("TRAILER!!!", b"")


def test_carries_host_tools_reads_past_an_early_archive(tmp_path: Path) -> None:
    early = archive(("kernel/x86/microcode/GenuineIntel.bin", b"ucode"))
    clean = archive(("usr/bin/kmod", b"\x7fELF /lib/ld-linux-aarch64.so.1\0"))
    leaked = archive(("usr/bin/kmod", b"\x7fELF " + native.INTERP.encode() + b"\0"))
    runner = RecordingRunner()
    for name, main, expected in (("clean", clean, False), ("leaked", leaked, True)):
        initrd = tmp_path / name
        initrd.write_bytes(early + b"\0" * 512 + gzip.compress(main))
        assert native.carries_host_tools(initrd, runner) is expected
    plain = tmp_path / "plain"
    plain.write_bytes(leaked)
    assert native.carries_host_tools(plain, runner) is True
    odd = tmp_path / "odd"
    odd.write_bytes(b"\x89LZO....")
    assert native.carries_host_tools(odd, runner) is None
