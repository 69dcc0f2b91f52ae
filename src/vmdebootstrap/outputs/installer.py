"""Debian Installer's kernels and initrds for the ISO's install entries,
fetched from the mirror and checked through the signed Release file."""

from __future__ import annotations

import logging
import re
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path

from vmdebootstrap.errors import BuildError
from vmdebootstrap.host.digest import file_sha256
from vmdebootstrap.host.run import Runner
from vmdebootstrap.intent.plan import IsoSpec

log = logging.getLogger("vmdebootstrap.outputs.installer")

ARCHIVE_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
INSTALLER_FILES = ("cdrom/vmlinuz", "cdrom/initrd.gz", "cdrom/gtk/vmlinuz", "cdrom/gtk/initrd.gz")


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


def parse_sha256sums(text: str) -> dict[str, str]:
    """Path (without a leading './') -> sha256 from a SHA256SUMS file."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        m = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line.strip())
        if m:
            name = m.group(2)
            result[name[2:] if name.startswith("./") else name] = m.group(1)
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


def fetch_installer(runner: Runner, spec: IsoSpec, dest: Path, scratch: Path, *,
                    fetch: Callable[[str, Path], None] = urllib_fetch,
                    keyring: Path = ARCHIVE_KEYRING) -> None:
    """Fetch the d-i cdrom kernels/initrds into ``dest`` (the install.* dir), each
    verified through SHA256SUMS, whose hash comes from the signed Release file."""
    assert spec.mirror
    base = f"{spec.mirror.rstrip('/')}/dists/{spec.distribution}"
    release, signature = scratch / "Release", scratch / "Release.gpg"
    fetch(f"{base}/Release", release)
    fetch(f"{base}/Release.gpg", signature)
    status = runner.run(["gpgv", "--status-fd", "1", "--keyring", keyring, signature, release],
                        capture=True, what="Release file signature check")
    if "[GNUPG:] VALIDSIG" not in status.stdout:
        raise BuildError(f"{base}/Release has no valid signature from {keyring}")
    images = f"main/installer-{spec.arch}/current/images"
    listed = parse_release_sha256(release.read_text(encoding="utf-8", errors="replace"))
    if f"{images}/SHA256SUMS" not in listed:
        raise BuildError(f"{base}/Release does not list {images}/SHA256SUMS")
    sums_path = scratch / "SHA256SUMS"
    fetch(f"{base}/{images}/SHA256SUMS", sums_path)
    verify_sha256(sums_path, listed[f"{images}/SHA256SUMS"][0], f"{images}/SHA256SUMS")
    sums = parse_sha256sums(sums_path.read_text(encoding="utf-8"))
    for name in INSTALLER_FILES:
        if name not in sums:
            raise BuildError(f"{images}/SHA256SUMS does not list {name}")
        target = dest / name.removeprefix("cdrom/")
        target.parent.mkdir(parents=True, exist_ok=True)
        fetch(f"{base}/{images}/{name}", target)
        verify_sha256(target, sums[name], f"{images}/{name}")
