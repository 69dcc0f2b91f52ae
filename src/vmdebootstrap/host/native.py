"""The host's own tools inside a foreign root, while its initramfs is made.

Under qemu-user every program start costs the emulator's start and the
translation of the dynamic linker and libc: 10 to 20 ms, where the host
needs one.  mkinitramfs with MODULES=most starts some 17,000 programs
(realpath, readlink, cp, mkdir, modinfo, ln... for each of about 2,500
modules and their firmware), which made the initramfs of an arm64 live
root take 7.7 of its 9 minutes here.  Those programs only move files and
read module metadata: what they do does not depend on the architecture
they run on.  So while the initramfs is made, the root's copies of them
(and the shell that runs mkinitramfs and its hooks) are the host's,
bind-mounted over the target's files; everything that is the target's own
(its dynamic linker, ldd, busybox, udev, dpkg) still runs emulated, and
every file copied into the initramfs is still the target's.

The host's programs need the host's dynamic linker and libraries inside
the root.  Neither may appear where the root's own tools look (a hook that
globs /usr/lib/*/libnss_* would copy the host's libraries into the
initramfs, and mkinitramfs links every /lib* into it), so they live in one
private directory, ``/.vmdbn``: the host's library directory bound there
read-only, the programs copied there with their ELF interpreter rewritten
to ``/.vmdbn/ld.so``, and LD_LIBRARY_PATH naming the directory for the
command (the target's linker passes over libraries of another machine).
Everything is undone on the way out, also on failure: the binds through
the ExitStack, the directory removed.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import lzma
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from vmdebootstrap.host.resources import mounted, remove_tree
from vmdebootstrap.host.run import Runner

log = logging.getLogger("vmdebootstrap")

PRIVATE = "/.vmdbn"
INTERP = f"{PRIVATE}/ld.so"
# What mkinitramfs, its hook functions and hooks start by the thousand;
# each does the same on any architecture.  Not kmod (modinfo, modprobe),
# md5sum, sha256sum or anything else a hook copies into the initramfs
# with copy_exec: the copy would be the host's.  carries_host_tools()
# checks the result all the same.
TOOLS = (
    "dash", "realpath", "readlink", "cp", "mkdir", "ln", "rm", "mv", "cat", "sed", "grep",
    "find", "sort", "ls", "mktemp", "env", "basename", "dirname", "touch", "chmod", "cut",
    "tr", "head", "tail", "wc", "xargs", "stat", "cpio", "gzip", "zstd",
)
PT_INTERP = 3


def elf_interpreter(data: bytes) -> tuple[int, int, str] | None:
    """(offset, size, path) of an ELF file's PT_INTERP segment, or None."""
    if data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return None
    wide, order = data[4] == 2, "<" if data[5] == 1 else ">"
    if wide:
        phoff, = struct.unpack_from(order + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 0x36)
    else:
        phoff, = struct.unpack_from(order + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 0x2A)
    for i in range(phnum):
        at = phoff + i * phentsize
        p_type, = struct.unpack_from(order + "I", data, at)
        if p_type != PT_INTERP:
            continue
        if wide:
            offset, = struct.unpack_from(order + "Q", data, at + 8)
            size, = struct.unpack_from(order + "Q", data, at + 32)
        else:
            offset, = struct.unpack_from(order + "I", data, at + 4)
            size, = struct.unpack_from(order + "I", data, at + 16)
        path = data[offset:offset + size].split(b"\0", 1)[0].decode()
        return offset, size, path
    return None


def with_interpreter(data: bytes, interp: str) -> bytes:
    """``data`` (a dynamically linked ELF program) asking for ``interp``,
    written over the old path in place (it must not be longer)."""
    found = elf_interpreter(data)
    if found is None:
        raise ValueError("not a dynamically linked ELF program")
    offset, size, _ = found
    new = interp.encode()
    if len(new) >= size:
        raise ValueError(f"{interp} does not fit in {size - 1} bytes")
    return data[:offset] + new.ljust(size, b"\0") + data[offset + size:]


def root_file(root: Path, path: str) -> Path | None:
    """Where ``path`` inside ``root`` really is (links followed inside the
    root, not on the host), if it is a regular file there."""
    current = root
    parts = [p for p in path.split("/") if p]
    hops = 0
    while parts:
        candidate = current / parts.pop(0)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(candidate)
            parts = [p for p in target.split("/") if p] + parts
            current = root if target.startswith("/") else current
            continue
        current = candidate
    return current if current.is_file() and not current.is_symlink() else None


def interpreter_of(path: Path) -> str | None:
    """The ELF interpreter ``path`` asks for (PT_INTERP is in its first page)."""
    with path.open("rb") as f:
        found = elf_interpreter(f.read(4096))
    return found[2] if found else None


def host_tools(tools: Sequence[str] = TOOLS) -> dict[str, Path]:
    """The host's programs among ``tools`` that its dynamic linker runs."""
    found = {}
    for name in tools:
        where = shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
        if where is None:
            continue
        real = Path(where).resolve()
        if interpreter_of(real) is not None:
            found[name] = real
    return found


def host_linker(programs: dict[str, Path]) -> Path | None:
    """The host's dynamic linker (its real file), which all ``programs`` ask for."""
    interps = {interpreter_of(path) for path in programs.values()} - {None}
    if len(interps) != 1:
        return None
    linker = Path(str(interps.pop())).resolve()
    return linker if linker.is_file() else None


@contextlib.contextmanager
def native_tools(runner: Runner, root: Path) -> Iterator[dict[str, str]]:
    """The host's TOOLS over the root's while the with block runs; yields
    the environment the chroot command needs.  Where the host cannot help
    (no such tools, linkers that differ) nothing changes and the
    environment is empty."""
    programs = host_tools()
    linker = host_linker(programs)
    targets = {name: target for name in programs
               if (target := root_file(root, f"/usr/bin/{name}")) is not None}
    private = root / PRIVATE.lstrip("/")
    if linker is None or not targets or private.exists() or private.is_symlink():
        log.info("foreign build: the initramfs is made by emulated tools only")
        yield {}
        return
    with contextlib.ExitStack() as stack:
        private.mkdir(mode=0o755)
        # remove_tree refuses to go below a mount: the host's libraries are
        # never deleted through the bind, even if it could not be undone.
        stack.callback(remove_tree, private)
        stack.enter_context(mounted(runner, str(linker.parent), private / "lib", None,
                                    "ro", bind=True))
        (private / "ld.so").symlink_to(f"lib/{linker.name}")
        for name, target in sorted(targets.items()):
            copy = private / name
            copy.write_bytes(with_interpreter(programs[name].read_bytes(), INTERP))
            copy.chmod(0o755)
            stack.enter_context(mounted(runner, str(copy), target, bind=True))
        log.info("foreign build: the host's %s run for the target's while the initramfs "
                 "is made", ", ".join(sorted(targets)))
        yield {"LD_LIBRARY_PATH": f"{PRIVATE}/lib"}


# ---- checking an initramfs -------------------------------------------------------------

CPIO_MAGICS = (b"070701", b"070702")  # newc, with and without checksums


def _skip_cpio(data: bytes, at: int) -> int:
    """The offset after the uncompressed newc archive starting at ``at``
    (an early microcode archive, say) and the NULs padding it."""
    while data[at:at + 6] in CPIO_MAGICS:
        namesize = int(data[at + 94:at + 102], 16)
        filesize = int(data[at + 54:at + 62], 16)
        name = data[at + 110:at + 110 + namesize - 1]
        at = (at + 110 + namesize + 3) & ~3
        at = (at + filesize + 3) & ~3
        if name == b"TRAILER!!!":
            while at < len(data) and data[at] == 0:
                at += 1
    return at


def initramfs_payload(data: bytes, runner: Runner) -> bytes | None:
    """The main archive of an initramfs, uncompressed; None when this host
    cannot uncompress it."""
    rest = data[_skip_cpio(data, 0):]
    if not rest:
        return data  # not compressed at all
    if rest[:2] == b"\x1f\x8b":
        return gzip.decompress(rest)
    if rest[:6] == b"\xfd7zXZ\x00" or rest[:3] == b"\x5d\x00\x00":
        return lzma.decompress(rest)
    tool = {b"\x28\xb5\x2f\xfd": "zstd", b"\x02\x21\x4c\x18": "lz4"}.get(rest[:4])
    if tool and shutil.which(tool):
        with tempfile.TemporaryDirectory(prefix="vmdebootstrap-initrd-") as tmp:
            packed, unpacked = Path(tmp) / "main", Path(tmp) / "main.cpio"
            packed.write_bytes(rest)
            runner.run([tool, "-d", "-q", "-f", str(packed), "-o", str(unpacked)],
                       what=f"reading the initramfs with {tool}")
            return unpacked.read_bytes()
    return None


def carries_host_tools(initrd: Path, runner: Runner) -> bool | None:
    """Whether one of our interpreter-rewritten host programs is in
    ``initrd`` (a hook copied a program it ran); None: cannot tell."""
    payload = initramfs_payload(initrd.read_bytes(), runner)
    if payload is None:
        return None
    return INTERP.encode() + b"\0" in payload
