"""Debian Installer's kernels and initrds for the ISO's install entries.

They come from the archive's ``debian-installer-N-netboot-ARCH`` package, not
from ``dists/*/main/installer-*/``: many mirrors (partial ones in particular)
carry the SHA256SUMS there but not the images.  The chain of trust is the
one apt uses: the suite's signed (In)Release -> the Packages index's SHA256
-> the package's SHA256 -> its files.

A preseed is put into each initrd as a second, separately compressed cpio
archive: the kernel unpacks concatenated archives into one root, and d-i
loads ``/preseed.cfg`` from there by itself ("initrd preseeding").  The
netboot initrd never mounts the CD, so a preseed on the ISO could not be read.
"""

from __future__ import annotations

import gzip
import logging
import lzma
import posixpath
import re
import shutil
import struct
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap.errors import BuildError
from vmdebootstrap.host.digest import file_sha256
from vmdebootstrap.host.run import Runner
from vmdebootstrap.intent.plan import IsoSpec

log = logging.getLogger("vmdebootstrap.outputs.installer")

ARCHIVE_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# Where the netboot package keeps its images: IMAGES/<release number>/<arch>/.
IMAGES = "usr/lib/debian-installer/images"
# Best compression first: the index is tens of MB uncompressed.
PACKAGES_SUFFIXES = (".xz", ".gz", "")
PRESEED_NAME = "preseed.cfg"

Fetch = Callable[[str, Path], None]


@dataclass(frozen=True)
class Installer:
    """What fetch_installer put into its ``dest``."""
    package: str
    version: str
    initrds: tuple[Path, ...]
    gtk: bool


def parse_release_sha256(text: str) -> dict[str, tuple[str, int]]:
    """Path -> (sha256, size) from the SHA256 section of a Release file."""
    result: dict[str, tuple[str, int]] = {}
    in_section = False
    for line in text.splitlines():
        if not line.startswith(" "):
            in_section = line.strip() == "SHA256:"
            continue
        parts = line.split()
        if in_section and len(parts) == 3 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            result[parts[2]] = (parts[0], int(parts[1]))
    return result


def verify_sha256(path: Path, expected: str, what: str) -> None:
    actual = file_sha256(path)
    if actual != expected:
        raise BuildError(f"{what}: SHA256 mismatch (expected {expected}, got {actual})")


def urllib_fetch(url: str, dest: Path) -> None:
    log.info("fetching %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, dest.open("wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except OSError as e:
        raise BuildError(f"could not fetch {url}: {e}") from e


# ---- the signed chain ---------------------------------------------------------------------

def _gpgv(runner: Runner, keyring: Path, args: Sequence[str | Path], what: str) -> None:
    status = runner.run(["gpgv", "--status-fd", "1", "--keyring", keyring, *args],
                        capture=True, what=f"{what} signature check")
    if "[GNUPG:] VALIDSIG" not in status.stdout:
        raise BuildError(f"{what} has no valid signature from {keyring}")


def signed_release(runner: Runner, base: str, scratch: Path, fetch: Fetch,
                   keyring: Path) -> tuple[str, str]:
    """(the suite's Release text as gpgv verified it, the URL it came from)."""
    release, inrelease = scratch / "Release", scratch / "InRelease"
    try:
        fetch(f"{base}/InRelease", inrelease)
    except BuildError as e:
        log.info("no InRelease (%s); using Release and Release.gpg", e)
        signature = scratch / "Release.gpg"
        fetch(f"{base}/Release", release)
        fetch(f"{base}/Release.gpg", signature)
        _gpgv(runner, keyring, [signature, release], f"{base}/Release")
        return release.read_text(encoding="utf-8", errors="replace"), f"{base}/Release"
    # Parse what gpgv wrote out, never the fetched file: text outside the
    # clearsigned part of an InRelease is not covered by its signature.
    release.unlink(missing_ok=True)
    _gpgv(runner, keyring, ["--output", release, inrelease], f"{base}/InRelease")
    return release.read_text(encoding="utf-8", errors="replace"), f"{base}/InRelease"


def check_suite(release: str, distribution: str, where: str) -> None:
    """A validly signed Release of another suite must not stand in for this one."""
    names = re.findall(r"^(?:Suite|Codename): *(\S+) *$", release, re.M)
    if names and distribution not in names:
        raise BuildError(f"{where} is for {'/'.join(names)}, not {distribution}")


def packages_index(listed: dict[str, tuple[str, int]], arch: str, where: str) -> str:
    for suffix in PACKAGES_SUFFIXES:
        path = f"main/binary-{arch}/Packages{suffix}"
        if path in listed:
            return path
    raise BuildError(f"{where} lists no main/binary-{arch}/Packages index")


def fetch_index(fetch: Fetch, base: str, path: str, sha256: str, dest: Path,
                by_hash: bool) -> None:
    """Fetch an index file the Release lists and check it against the Release."""
    if by_hash:
        # The by-hash copy cannot change under us if the mirror updates
        # between our Release and index fetches; partial mirrors may lack it.
        try:
            fetch(f"{base}/{posixpath.dirname(path)}/by-hash/SHA256/{sha256}", dest)
        except BuildError as e:
            log.info("no by-hash copy of %s (%s)", path, e)
            fetch(f"{base}/{path}", dest)
    else:
        fetch(f"{base}/{path}", dest)
    verify_sha256(dest, sha256, f"{base}/{path}")


def read_index(path: Path) -> str:
    if path.suffix == ".xz":
        data = lzma.decompress(path.read_bytes())
    elif path.suffix == ".gz":
        data = gzip.decompress(path.read_bytes())
    else:
        data = path.read_bytes()
    return data.decode("utf-8", errors="replace")


def netboot_stanza(packages: str, arch: str, where: str) -> dict[str, str]:
    """The fields of the one ``debian-installer-N-netboot-ARCH`` stanza."""
    wanted = f"debian-installer-N-netboot-{arch}"
    found = list(re.finditer(
        rf"^Package: (debian-installer-[0-9]+-netboot-{re.escape(arch)}) *$", packages, re.M))
    if not found:
        raise BuildError(f"{where} has no {wanted} package, so there is no Debian "
                         "Installer to add for --installer")
    if len(found) > 1:
        names = ", ".join(m.group(1) for m in found)
        raise BuildError(f"{where} has {len(found)} {wanted} stanzas ({names}); expected one")
    end = packages.find("\n\n", found[0].start())
    stanza = packages[found[0].start(): end if end >= 0 else len(packages)]
    fields = dict(re.findall(r"^([A-Za-z0-9-]+): *(.*?) *$", stanza, re.M))
    missing = [f for f in ("Version", "Filename", "SHA256") if f not in fields]
    if missing:
        raise BuildError(f"{where}: {fields['Package']} lacks {', '.join(missing)}")
    if not re.fullmatch(r"[0-9a-f]{64}", fields["SHA256"]):
        raise BuildError(f"{where}: {fields['Package']} has a malformed SHA256")
    if not re.fullmatch(r"pool/[^\s]+\.deb", fields["Filename"]) or ".." in fields["Filename"]:
        raise BuildError(f"{where}: {fields['Package']} has an unexpected Filename "
                         f"{fields['Filename']!r}")
    return fields


# ---- fetching and unpacking ---------------------------------------------------------------

def _take(src: Path, dest: Path, label: str) -> list[Path]:
    """Move kernel and initrd (in that order) out of the unpacked package;
    [] unless both are there."""
    pairs = ((src / "linux", dest / "vmlinuz"), (src / "initrd.gz", dest / "initrd.gz"))
    if not all(s.is_file() and not s.is_symlink() for s, _ in pairs):
        log.info("the installer package has no %s kernel and initrd in %s", label, src)
        return []
    dest.mkdir(parents=True, exist_ok=True)
    for s, d in pairs:
        shutil.move(s, d)
    return [d for _, d in pairs]


def fetch_installer(runner: Runner, spec: IsoSpec, dest: Path, scratch: Path, *,
                    fetch: Fetch = urllib_fetch,
                    keyring: Path = ARCHIVE_KEYRING) -> Installer:
    """Put d-i's text kernel/initrd (and the gtk ones, where the package has
    them) into ``dest`` (the install.* dir), every step checked by hash up to
    the suite's signed Release."""
    assert spec.mirror
    mirror = spec.mirror.rstrip("/")
    base = f"{mirror}/dists/{spec.distribution}"
    release, release_url = signed_release(runner, base, scratch, fetch, keyring)
    check_suite(release, spec.distribution, release_url)
    listed = parse_release_sha256(release)
    index = packages_index(listed, spec.arch, release_url)
    index_file = scratch / posixpath.basename(index)
    by_hash = re.search(r"^Acquire-By-Hash: *yes *$", release, re.M) is not None
    fetch_index(fetch, base, index, listed[index][0], index_file, by_hash)
    fields = netboot_stanza(read_index(index_file), spec.arch, f"{base}/{index}")
    index_file.unlink()
    package, version = fields["Package"], fields["Version"]
    deb = scratch / f"{package}.deb"
    log.info("fetching the Debian Installer: %s %s", package, version)
    fetch(f"{mirror}/{fields['Filename']}", deb)
    verify_sha256(deb, fields["SHA256"], f"{mirror}/{fields['Filename']}")
    tree = scratch / "installer-deb"
    runner.run(["dpkg-deb", "-x", deb, tree], what=f"unpacking {package}")
    number = package.split("-")[2]
    images = tree / IMAGES / number / spec.arch
    text = _take(images / "text/debian-installer" / spec.arch, dest, "text")
    if not text:
        raise BuildError(f"{package} {version} has no {IMAGES}/{number}/{spec.arch}/text/"
                         f"debian-installer/{spec.arch}/linux and initrd.gz")
    gtk = _take(images / "gtk/debian-installer" / spec.arch, dest / "gtk", "gtk")
    # The unpacked package is several times the size of what the ISO needs.
    shutil.rmtree(tree)
    deb.unlink()
    log.info("Debian Installer %s %s: text%s", package, version, " and gtk" if gtk else " only")
    initrds = tuple(files[-1] for files in (text, gtk) if files)
    return Installer(package, version, initrds, bool(gtk))


# ---- preseeding ---------------------------------------------------------------------------

def _pad4(length: int) -> bytes:
    return b"\0" * (-length % 4)


def newc_archive(members: Sequence[tuple[str, bytes]], mtime: int) -> bytes:
    """A cpio archive in the kernel's initramfs format ("newc"): regular files,
    mode 0644, owned by 0:0, every timestamp ``mtime``, so the same input
    always gives the same bytes."""
    if not 0 <= mtime <= 0xFFFFFFFF:
        raise BuildError(f"timestamp {mtime} does not fit a cpio header")
    out = bytearray()

    def entry(name: str, data: bytes, ino: int, mode: int, nlink: int, stamp: int) -> None:
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, nlink, stamp, len(data), 0, 0, 0, 0, len(encoded), 0)
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        out.extend(_pad4(len(out)))
        out.extend(data)
        out.extend(_pad4(len(out)))

    for ino, (name, data) in enumerate(members, start=1):
        entry(name, data, ino, 0o100644, 1, mtime)
    entry("TRAILER!!!", b"", 0, 0, 1, 0)
    return bytes(out)


def deterministic_gzip(data: bytes) -> bytes:
    # A fixed header (no name, mtime 0, OS "unknown") written by hand: the
    # gzip module's header differs between Python versions.
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(data) + deflate.flush()
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def preseed_archive(preseed: bytes, mtime: int) -> bytes:
    return deterministic_gzip(newc_archive([(PRESEED_NAME, preseed)], mtime))


def append_preseed(initrds: Sequence[Path], preseed: Path, mtime: int) -> None:
    """Append ``preseed`` as /preseed.cfg to each initrd, leaving its bytes as they were."""
    archive = preseed_archive(preseed.read_bytes(), mtime)
    for initrd in initrds:
        with initrd.open("ab") as f:
            f.write(archive)
    log.info("preseed %s added to %d installer initrd(s)", preseed, len(initrds))


def stage_installer(runner: Runner, spec: IsoSpec, dest: Path, scratch: Path, *,
                    fetch: Fetch = urllib_fetch, keyring: Path = ARCHIVE_KEYRING) -> bool:
    """The installer files (preseeded if asked) in ``dest``; True if the gtk ones are there."""
    got = fetch_installer(runner, spec, dest, scratch, fetch=fetch, keyring=keyring)
    if spec.preseed is not None:
        epoch = spec.source_date_epoch
        append_preseed(got.initrds, spec.preseed, epoch if epoch is not None else 0)
    return got.gtk
