"""A private apt on the build host, for packages of any architecture.

Some files an output needs come from Debian packages that must not be
installed on the host and need no chroot: the target architecture's signed
boot loaders, for one.  As mmdebstrap does, this apt gets its own apt.conf
through APT_CONFIG (so nothing under the host's /etc/apt is read), its own
sources naming the build's mirror, suite and components, its own lists,
cache, dpkg status and logs under a scratch directory, and the target's
architecture.  The mirror's Release signature is checked against the Debian
archive keyring (or the keyring the build was given), copied into the
scratch directory so that it is the only key apt trusts.  Nothing of the
host's apt state is written; the scratch directory goes with the build's.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap.errors import BuildError
from vmdebootstrap.host.apt_sources import source_options
from vmdebootstrap.host.run import CommandError, Runner

ARCHIVE_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
APT_QUIET = ("-q", "-o", "Dpkg::Use-Pty=0", "-o", "APT::Color=0")
# What apt says of a package the suite does not have (apt-get download
# names every missing package before it gives up).
_MISSING = (re.compile(r"^E: Unable to locate package (\S+)"),
            re.compile(r"^E: Can't select candidate version from package (\S+)"),
            re.compile(r"^E: Package '([^']+)' has no installation candidate"))


@dataclass(frozen=True)
class Archive:
    """Where the packages come from: the build's own mirror and suite."""

    mirror: str
    suite: str
    components: tuple[str, ...] = ("main",)
    keyring: Path | None = None  # a keyring file, or a directory of them; None: Debian's
    check_signatures: bool = True
    snapshot: bool = False


def sources_list(archive: Archive) -> str:
    # Without signature checks (--no-check-gpg) this apt has no key at all.
    options = source_options(check_signatures=archive.check_signatures,
                             snapshot=archive.snapshot)
    return (f"deb {options}{archive.mirror.rstrip('/')} {archive.suite} "
            f"{' '.join(archive.components)}\n")


def apt_conf(root: Path, arch: str) -> str:
    """The whole configuration of the private apt rooted at ``root``."""
    if '"' in str(root) or "\n" in str(root):
        raise BuildError(f"the scratch directory {root!r} cannot be named in an apt.conf")
    return "\n".join((
        f'Dir "{root}/";',
        # Relative to Dir like the rest, but apt reads an absolute default.
        f'Dir::State::status "{root}/var/lib/dpkg/status";',
        f'APT::Architecture "{arch}";',
        f'APT::Architectures "{arch}";',
        # The scratch directory lies in the build's private (0700) work
        # directory where the _apt user cannot write; apt checks what it
        # fetches against the signed Release either way.
        'APT::Sandbox::User "root";',
        'Acquire::Languages "none";',
        'Acquire::Retries "3";',
        "",
    ))


def apt_env(root: Path) -> dict[str, str]:
    return {"APT_CONFIG": str(root / "apt.conf")}


def apt_get_argv(*args: str) -> list[str]:
    return ["apt-get", *APT_QUIET, *args]


def unpack_argv(deb: Path, dest: Path) -> list[str]:
    return ["dpkg-deb", "--extract", str(deb), str(dest)]


def missing_packages(lines: Iterable[str]) -> list[str]:
    """The packages apt said it could not find, in the order it said so."""
    found = []
    for line in lines:
        for pattern in _MISSING:
            m = pattern.match(line.strip())
            if m and m.group(1) not in found:
                found.append(m.group(1))
    return found


def _keyrings(keyring: Path | None) -> list[Path]:
    if keyring is None:
        return [ARCHIVE_KEYRING]
    if keyring.is_dir():
        return sorted(p for p in keyring.iterdir() if p.suffix in (".gpg", ".asc"))
    return [keyring]


def _trusted_name(keyring: Path) -> str:
    # apt reads only *.gpg and *.asc from its trusted parts directory.
    return keyring.name if keyring.suffix in (".gpg", ".asc") else keyring.name + ".gpg"


class HelperApt:
    """apt-get for ``arch`` from ``archive``, confined to ``root``."""

    def __init__(self, runner: Runner, root: Path, arch: str, archive: Archive) -> None:
        self.runner, self.root, self.arch, self.archive = runner, root, arch, archive
        self.updated = False

    def prepare(self) -> None:
        """Write the configuration, the sources and the empty state apt expects."""
        root = self.root
        for d in ("etc/apt/apt.conf.d", "etc/apt/sources.list.d", "etc/apt/preferences.d",
                  "etc/apt/trusted.gpg.d", "var/lib/apt/lists/partial",
                  "var/cache/apt/archives/partial", "var/lib/dpkg", "var/log/apt"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "var/lib/dpkg/status").touch()
        (root / "apt.conf").write_text(apt_conf(root, self.arch))
        (root / "etc/apt/sources.list").write_text(sources_list(self.archive))
        if self.archive.check_signatures:
            keys = _keyrings(self.archive.keyring)
            if not keys or not all(k.is_file() for k in keys):
                raise BuildError(f"no keyring to check {self.archive.suite} with: "
                                 f"{self.archive.keyring or ARCHIVE_KEYRING} "
                                 "(install debian-archive-keyring)")
            for key in keys:
                shutil.copyfile(key, root / "etc/apt/trusted.gpg.d" / _trusted_name(key))

    def update(self) -> None:
        """Fetch the indexes (once: the ISO's loaders share one helper apt)."""
        if self.updated:
            return
        self.prepare()
        self.runner.run(apt_get_argv("update"), env=apt_env(self.root), label="apt",
                        what=f"apt-get update for {self.arch} from the build's mirror failed")
        self.updated = True

    def download(self, packages: Sequence[str], dest: Path) -> list[str]:
        """Download ``packages`` (checked against the signed indexes) into
        ``dest``; return the ones the suite does not have (then nothing is
        downloaded).  Any other failure raises."""
        dest.mkdir(parents=True, exist_ok=True)
        result = self.runner.run(apt_get_argv("download", *packages), env=apt_env(self.root),
                                 cwd=dest, label="apt", check=False)
        if result.returncode == 0:
            return []
        missing = missing_packages(result.tail)
        if missing:
            return missing
        raise CommandError(apt_get_argv("download", *packages), result.returncode, result.tail,
                           f"downloading {', '.join(packages)} for {self.arch} failed")

    def unpack(self, debs: Iterable[Path], dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for deb in debs:
            self.runner.run(unpack_argv(deb, dest), what=f"unpacking {deb.name}")
