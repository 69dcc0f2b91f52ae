"""What is installed in a built root: each package, where it came from, its licence.

Read from the root's files only (its dpkg database through the host's
dpkg-query, its apt lists, its /usr/share/doc): the root may be of a
foreign architecture, so nothing runs inside it.  The apt lists must still
be there, so this runs before the build cleans them.
"""

from __future__ import annotations

import bz2
import gzip
import logging
import lzma
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap.host.run import Runner
from vmdebootstrap.root.licenses import declared_license

log = logging.getLogger("vmdebootstrap")

# Tab-separated, one package a line; the status comes first so that packages
# that are gone (only their configuration files left) can be left out.
QUERY_FORMAT = ("${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\t"
                "${source:Package}\t${source:Version}\n")
# dpkg's status letters (the second of Status-Abbrev) of a package whose
# files are not on disk: not installed, or only its configuration files.
_NOT_ON_DISK = {"n", "c"}
# How apt may have stored a list, and how to read it; the ones Python cannot
# read are piped through the host's tool, or skipped when it is missing.
_OPENERS: dict[str, Callable[[Path], bytes]] = {
    "": Path.read_bytes,
    ".gz": lambda p: gzip.decompress(p.read_bytes()),
    ".xz": lambda p: lzma.decompress(p.read_bytes()),
    ".lzma": lambda p: lzma.decompress(p.read_bytes()),
    ".bz2": lambda p: bz2.decompress(p.read_bytes()),
}
_TOOLS = {".lz4": "lz4", ".zst": "zstd"}
_PACKAGE = re.compile(r"^Package: *(\S+)", re.M)
_MAX_LINKS = 40


@dataclass(frozen=True)
class InstalledPackage:
    name: str
    version: str
    architecture: str
    source: str            # source package name (dpkg's ${source:Package})
    source_version: str    # ${source:Version}
    filename: str | None   # pool path in the mirror, from the root's apt lists
    sha256: str | None     # the .deb's SHA256 from the apt lists
    license: str | None    # SPDX expression from its DEP-5 copyright file


@dataclass(frozen=True)
class _Installed:
    name: str
    version: str
    architecture: str
    source: str
    source_version: str


def inventory(runner: Runner, root: Path) -> tuple[InstalledPackage, ...]:
    """Every package whose files are in ``root``, sorted by name and
    architecture, with its mirror file and checksum and declared licence."""
    installed = _installed_packages(runner, root)
    origins = _package_origins(runner, root / "var/lib/apt/lists", installed)
    licenses: dict[str, str | None] = {}
    packages = []
    for p in installed:
        doc = p.name.partition(":")[0]  # a multi-arch name:arch has name's lists and docs
        if doc not in licenses:
            licenses[doc] = package_license(root, doc)
        filename, sha256 = origins.get((doc, p.version, p.architecture), (None, None))
        packages.append(InstalledPackage(p.name, p.version, p.architecture, p.source,
                                         p.source_version, filename, sha256, licenses[doc]))
    return tuple(packages)


def _installed_packages(runner: Runner, root: Path) -> list[_Installed]:
    result = runner.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
                         f"-f={QUERY_FORMAT}"], capture=True,
                        what="listing the installed packages failed")
    packages = []
    for line in result.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) != 6 or fields[0][1:2] in _NOT_ON_DISK:
            continue
        _status, name, version, arch, source, source_version = fields
        # Should a dpkg-query leave ${source:*} empty: the binary's own.
        packages.append(_Installed(name, version, arch, source or name.partition(":")[0],
                                   source_version or version))
    return sorted(packages, key=lambda p: (p.name, p.architecture))


def _package_origins(runner: Runner, lists: Path, installed: Iterable[_Installed],
                     ) -> dict[tuple[str, str, str], tuple[str | None, str | None]]:
    """(name, version, architecture) -> (Filename, SHA256) from the apt
    lists, for the installed packages found there; the first list (by name)
    that has one wins."""
    wanted: dict[str, set[tuple[str, str]]] = {}
    for p in installed:
        wanted.setdefault(p.name.partition(":")[0], set()).add((p.version, p.architecture))
    found: dict[tuple[str, str, str], tuple[str | None, str | None]] = {}
    for path, suffix in _package_lists(lists):
        text = _read_list(runner, path, suffix)
        if text is not None:
            _scan(text, wanted, found)
    return found


def _package_lists(lists: Path) -> list[tuple[Path, str]]:
    """The Packages files in ``lists`` and how each is compressed."""
    paths = []
    for path in sorted(lists.glob("*_Packages*")):
        suffix = path.name[path.name.rindex("_Packages") + len("_Packages"):]
        # A link could lead out of the root: lists are regular files.
        if (suffix in _OPENERS or suffix in _TOOLS) and path.is_file() \
                and not path.is_symlink():
            paths.append((path, suffix))
    return paths


def _read_list(runner: Runner, path: Path, suffix: str) -> str | None:
    if suffix in _OPENERS:
        try:
            return _OPENERS[suffix](path).decode("utf-8", "replace")
        except (OSError, EOFError, lzma.LZMAError, ValueError) as e:
            log.warning("could not read the apt list %s: %s", path, e)
            return None
    tool = _TOOLS[suffix]
    if not shutil.which(tool):
        log.warning("cannot read the apt list %s without %s on the host: the SBOM "
                    "lacks the files and checksums it would give", path, tool)
        return None
    result = runner.run([tool, "-d", "-c", "-q", str(path)], capture=True, check=False)
    if result.returncode != 0:
        log.warning("could not read the apt list %s: %s exited with status %d",
                    path, tool, result.returncode)
        return None
    return result.stdout


def _scan(text: str, wanted: dict[str, set[tuple[str, str]]],
          found: dict[tuple[str, str, str], tuple[str | None, str | None]]) -> None:
    """One pass over a Packages file: only the stanzas of wanted package
    names are read further, and of those only the fields needed."""
    for m in _PACKAGE.finditer(text):
        versions = wanted.get(m.group(1))
        if not versions:
            continue
        start = text.rfind("\n\n", 0, m.start()) + 1
        end = text.find("\n\n", m.end())
        stanza = text[start: end if end >= 0 else len(text)]
        key = (_field(stanza, "Version"), _field(stanza, "Architecture"))
        if key[0] is None or key[1] is None or key not in versions:
            continue
        entry = (m.group(1), key[0], key[1])
        if entry not in found:
            found[entry] = (_field(stanza, "Filename"), _field(stanza, "SHA256"))


def _field(stanza: str, name: str) -> str | None:
    m = re.search(rf"^{name}: *(\S+)", stanza, re.M)
    return m.group(1) if m else None


def package_license(root: Path, doc: str) -> str | None:
    """The licence /usr/share/doc/DOC/copyright declares in ``root``."""
    path = resolve_inside(root, f"usr/share/doc/{doc}/copyright")
    if path is None or not path.is_file():
        return None  # no copyright file, or a link out of the root
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return None
    return declared_license(text)


def resolve_inside(root: Path, path: str) -> Path | None:
    """``path`` (relative to ``root``) with every symbolic link on the way
    resolved as it would be with ``root`` as "/": an absolute target starts
    again at ``root``.  None for a link that climbs out of ``root`` with
    "..", or a loop: what is outside the root is never read."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if not done:
                return None
            done.pop()
            continue
        here = root.joinpath(*done, part)
        if not here.is_symlink():
            done.append(part)
            continue
        links += 1
        if links > _MAX_LINKS:
            return None
        target = os.readlink(here)
        if target.startswith("/"):
            done = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return root.joinpath(*done)
