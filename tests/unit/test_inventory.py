"""root/inventory.py: the installed packages of a root, their mirror files and
checksums from its apt lists, their licences from its doc dirs, read from a
fake root in tmp_path (links out of it ignored)."""

from __future__ import annotations

import gzip
import logging
import lzma
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import RecordingRunner
from vmdebootstrap.host.run import Result, SubprocessRunner
from vmdebootstrap.root import inventory as inv
from vmdebootstrap.root.inventory import InstalledPackage, inventory, resolve_inside

SHA = {name: f"{i:x}" * 64 for i, name in enumerate(
    ("adduser", "libc6-old", "libc6", "zlib-amd64", "zlib-i386", "libgcc", "lz4"), 1)}

DPKG_QUERY = (
    "ii \tzlib1g\t1:1.2.13.dfsg-1\ti386\tzlib\t1:1.2.13.dfsg-1\n"
    "ii \tlibc6\t2.36-9+deb12u4\tamd64\tglibc\t2.36-9+deb12u4\n"
    "ii \tadduser\t3.134\tall\tadduser\t3.134\n"
    "rc \tgone\t1.0\tamd64\tgone\t1.0\n"
    "ii \tzlib1g\t1:1.2.13.dfsg-1\tamd64\tzlib\t1:1.2.13.dfsg-1\n"
    "ii \tlibgcc-s1\t12.2.0-14+b1\tamd64\tgcc-12\t12.2.0-14\n"
    "ii \tlibstdc++6\t12.2.0-14\tamd64\tgcc-12\t12.2.0-14\n"
    "ii \tlocal-tool\t1.0\tamd64\tlocal-tool\t1.0\n"
    "ii \tescape-relative\t1.0\tall\tescape-relative\t1.0\n"
    "ii \tescape-absolute\t1.0\tall\tescape-absolute\t1.0\n"
    "iU \tlz4pkg\t2.0\tamd64\tlz4pkg\t2.0\n"
)

DEP5 = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: {name}

Files: *
Copyright: 2000 Someone
License: {license}
 The licence text.
"""


def stanza(name: str, version: str, arch: str, sha: str, first: str = "Package") -> str:
    fields = [f"Package: {name}", f"Version: {version}", f"Architecture: {arch}",
              "Maintainer: Someone <someone@example.org>",
              f"Filename: pool/main/{name[0]}/{name}/{name}_{version.split(':')[-1]}_{arch}.deb",
              "Size: 1000", f"SHA256: {sha}", "Description: a package"]
    if first != "Package":  # Package need not be the first field
        fields.insert(0, fields.pop(fields.index(next(f for f in fields if f.startswith(first)))))
    return "\n".join(fields) + "\n"


def make_root(root: Path) -> Path:
    lists = root / "var/lib/apt/lists"
    lists.mkdir(parents=True)
    amd64 = "\n".join([
        stanza("adduser", "3.134", "all", SHA["adduser"]),
        stanza("libc6", "2.36-9+deb12u3", "amd64", SHA["libc6-old"]),  # not the installed one
        stanza("zlib1g", "1:1.2.13.dfsg-1", "amd64", SHA["zlib-amd64"], first="Version"),
        stanza("libgcc-s1", "12.2.0-14+b1", "amd64", SHA["libgcc"]),
        stanza("unrelated", "1", "amd64", "0" * 64),
    ])
    (lists / "mirror.invalid_debian_dists_bookworm_main_binary-amd64_Packages").write_text(amd64)
    security = stanza("libc6", "2.36-9+deb12u4", "amd64", SHA["libc6"])
    (lists / "mirror.invalid_debian-security_dists_bookworm-security_main_binary-amd64_Packages.gz"
     ).write_bytes(gzip.compress(security.encode()))
    i386 = stanza("zlib1g", "1:1.2.13.dfsg-1", "i386", SHA["zlib-i386"])
    (lists / "mirror.invalid_debian_dists_bookworm_main_binary-i386_Packages.xz").write_bytes(
        lzma.compress(i386.encode()))
    (lists / "mirror.invalid_debian_dists_bookworm_main_i18n_Translation-en").write_text(
        "Package: libc6\nDescription-en: not a Packages file\n")
    (lists / "mirror.invalid_debian_dists_bookworm_InRelease").write_text("Origin: Debian\n")
    doc = root / "usr/share/doc"
    for name, license in (("adduser", "GPL-2+"), ("zlib1g", "Zlib"),
                          ("gcc-12-base", "GPL-3+ with GCC-Runtime-3.1 exception")):
        (doc / name).mkdir(parents=True)
        (doc / name / "copyright").write_text(DEP5.format(name=name, license=license))
    (doc / "libc6").mkdir()
    (doc / "libc6/copyright").write_text("This is the Debian prepackaged version of glibc.\n")
    (doc / "libgcc-s1").symlink_to("gcc-12-base")                      # relative
    (doc / "libstdc++6").symlink_to("/usr/share/doc/gcc-12-base")      # absolute, inside
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "copyright").write_text(DEP5.format(name="outside", license="MIT"))
    (doc / "escape-relative").symlink_to("../../../../outside")        # climbs out
    (doc / "escape-absolute").symlink_to(outside)                      # names a host path
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path / "root")


def by_key(packages: tuple[InstalledPackage, ...]) -> dict[tuple[str, str], InstalledPackage]:
    return {(p.name, p.architecture): p for p in packages}


def test_inventory_reads_dpkg_lists_and_doc_dirs(root: Path) -> None:
    runner = RecordingRunner({"dpkg-query": DPKG_QUERY})
    packages = inventory(runner, root)
    assert runner.calls[0] == ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
                               f"-f={inv.QUERY_FORMAT}"]
    assert [(p.name, p.architecture) for p in packages] == [
        ("adduser", "all"), ("escape-absolute", "all"), ("escape-relative", "all"),
        ("libc6", "amd64"), ("libgcc-s1", "amd64"), ("libstdc++6", "amd64"),
        ("local-tool", "amd64"), ("lz4pkg", "amd64"), ("zlib1g", "amd64"), ("zlib1g", "i386")]
    got = by_key(packages)
    assert got["adduser", "all"] == InstalledPackage(
        "adduser", "3.134", "all", "adduser", "3.134",
        "pool/main/a/adduser/adduser_3.134_all.deb", SHA["adduser"], "GPL-2.0-or-later")
    # The installed version, from the compressed security list, not the older one.
    libc6 = got["libc6", "amd64"]
    assert (libc6.source, libc6.sha256, libc6.license) == ("glibc", SHA["libc6"], None)
    assert got["zlib1g", "amd64"].sha256 == SHA["zlib-amd64"]
    assert got["zlib1g", "i386"].sha256 == SHA["zlib-i386"]
    assert got["zlib1g", "i386"].license == "Zlib"
    libgcc = got["libgcc-s1", "amd64"]
    assert (libgcc.version, libgcc.source_version) == ("12.2.0-14+b1", "12.2.0-14")
    assert libgcc.license == "GPL-3.0-or-later WITH GCC-exception-3.1"
    assert got["libstdc++6", "amd64"].license == libgcc.license
    assert got["libstdc++6", "amd64"].filename is None  # not in the lists
    local = got["local-tool", "amd64"]
    assert (local.filename, local.sha256, local.license) == (None, None, None)


def test_doc_links_out_of_the_root_are_not_followed(root: Path) -> None:
    got = by_key(inventory(RecordingRunner({"dpkg-query": DPKG_QUERY}), root))
    assert got["escape-relative", "all"].license is None
    assert got["escape-absolute", "all"].license is None
    assert resolve_inside(root, "usr/share/doc/escape-relative/copyright") is None
    # An absolute link is read with the root as "/": the host path is not there.
    assert resolve_inside(root, "usr/share/doc/escape-absolute/copyright") == \
        root / str(root.parent / "outside").lstrip("/") / "copyright"


def test_resolve_inside(tmp_path: Path) -> None:
    (tmp_path / "usr/share/doc/real").mkdir(parents=True)
    doc = tmp_path / "usr/share/doc"
    (doc / "up").symlink_to("../doc/./real")
    (doc / "loop-a").symlink_to("loop-b")
    (doc / "loop-b").symlink_to("loop-a")
    (tmp_path / "lib").symlink_to("usr/share")
    assert resolve_inside(tmp_path, "usr/share/doc/up/copyright") == doc / "real/copyright"
    assert resolve_inside(tmp_path, "/lib/doc/up") == doc / "real"
    assert resolve_inside(tmp_path, "usr/share/doc/loop-a/copyright") is None
    assert resolve_inside(tmp_path, "../etc/passwd") is None


def test_multiarch_name_uses_the_doc_dir_without_arch(root: Path) -> None:
    query = "ii \tzlib1g:i386\t1:1.2.13.dfsg-1\ti386\tzlib\t1:1.2.13.dfsg-1\n"
    (p,) = inventory(RecordingRunner({"dpkg-query": query}), root)
    assert (p.license, p.sha256) == ("Zlib", SHA["zlib-i386"])


def test_lz4_and_zstd_lists_go_through_the_host_tool(root: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    lists = root / "var/lib/apt/lists"
    (lists / "mirror.invalid_debian_dists_bookworm-updates_main_binary-amd64_Packages.lz4"
     ).write_bytes(b"not read here")
    monkeypatch.setattr(inv.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    runner = RecordingRunner({"dpkg-query": DPKG_QUERY,
                              "lz4": stanza("lz4pkg", "2.0", "amd64", SHA["lz4"])})
    got = by_key(inventory(runner, root))
    assert got["lz4pkg", "amd64"].sha256 == SHA["lz4"]
    assert runner.calls[1][:4] == ["lz4", "-d", "-c", "-q"]


def test_unreadable_lists_are_skipped(root: Path, monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    lists = root / "var/lib/apt/lists"
    (lists / "a_Packages.zst").write_bytes(b"zstd data")
    (lists / "b_Packages.xz").write_bytes(b"not xz")
    (lists / "c_Packages.diff_Index").write_text("SHA256-Current: x\n")
    monkeypatch.setattr(inv.shutil, "which", lambda tool: None)
    runner = RecordingRunner({"dpkg-query": DPKG_QUERY})
    with caplog.at_level(logging.WARNING):
        got = by_key(inventory(runner, root))
    assert got["adduser", "all"].sha256 == SHA["adduser"]
    assert [c[0] for c in runner.calls] == ["dpkg-query"]
    assert "without zstd" in caplog.text and "b_Packages.xz" in caplog.text


def test_no_apt_lists(tmp_path: Path) -> None:
    (p,) = inventory(RecordingRunner({"dpkg-query": "ii \ta\t1\tall\ta\t1\n"}), tmp_path)
    assert (p.filename, p.sha256, p.license) == (None, None, None)


@pytest.mark.skipif(not shutil.which("dpkg-query"), reason="needs dpkg-query")
def test_the_query_format_works_with_the_real_dpkg_query(root: Path) -> None:
    status = "".join(
        f"Package: {name}\nStatus: {status}\nMaintainer: M <m@example.org>\n"
        f"Architecture: {arch}\n{source}Version: {version}\nDescription: x\n\n"
        for name, status, arch, source, version in (
            ("adduser", "install ok installed", "all", "", "3.134"),
            ("gone", "deinstall ok config-files", "amd64", "", "1.0"),
            ("libgcc-s1", "install ok installed", "amd64", "Source: gcc-12 (12.2.0-14)\n",
             "12.2.0-14+b1")))
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(status)
    got = inventory(SubprocessRunner(), root)
    assert [(p.name, p.version, p.source, p.source_version) for p in got] == [
        ("adduser", "3.134", "adduser", "3.134"),
        ("libgcc-s1", "12.2.0-14+b1", "gcc-12", "12.2.0-14")]


@pytest.mark.skipif(not shutil.which("lz4"), reason="needs lz4")
def test_a_real_lz4_list(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    lists = root / "var/lib/apt/lists"
    data = stanza("lz4pkg", "2.0", "amd64", SHA["lz4"]).encode()
    packed = subprocess.run(["lz4", "-c", "-q"], input=data, capture_output=True,
                            check=True).stdout
    (lists / "x_Packages.lz4").write_bytes(packed)
    (lists / "y_Packages.lz4").write_bytes(b"corrupt")  # lz4 fails: skipped
    got = by_key(inventory(_RealLz4(), root))
    assert got["lz4pkg", "amd64"].sha256 == SHA["lz4"]
    assert "y_Packages.lz4: lz4 exited with status" in caplog.text


class _RealLz4(RecordingRunner):
    """dpkg-query answered from DPKG_QUERY, lz4 run for real."""

    def __init__(self) -> None:
        super().__init__({"dpkg-query": DPKG_QUERY})

    def run(self, argv: Sequence[str | os.PathLike[str]], **kwargs: Any) -> Result:
        if argv[0] == "lz4":
            return SubprocessRunner().run(argv, **kwargs)
        return super().run(argv, **kwargs)


def test_one_fast_pass_over_a_bookworm_sized_list(tmp_path: Path) -> None:
    """~63000 stanzas (a bookworm main list): only the wanted ones are parsed."""
    filler = "Maintainer: M <m@example.org>\nDescription: d\n" + " long line\n" * 20
    text = "\n".join(
        f"Package: pkg{i}\nVersion: 1.{i}\nArchitecture: amd64\n{filler}"
        f"Filename: pool/main/p/pkg{i}/pkg{i}_1.{i}_amd64.deb\nSHA256: {i:064x}\n"
        for i in range(63000))
    lists = tmp_path / "var/lib/apt/lists"
    lists.mkdir(parents=True)
    (lists / "big_Packages").write_text(text)
    query = "".join(f"ii \tpkg{i}\t1.{i}\tamd64\tpkg{i}\t1.{i}\n" for i in range(0, 63000, 250))
    start = time.monotonic()
    got = inventory(RecordingRunner({"dpkg-query": query}), tmp_path)
    took = time.monotonic() - start
    assert len(got) == 252 and all(p.sha256 for p in got)
    assert by_key(got)["pkg62750", "amd64"].sha256 == f"{62750:064x}"
    assert took < 10, f"{took:.1f} s"
