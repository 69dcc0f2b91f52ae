"""The Debian Installer for --iso --installer: the signed chain from the
suite's Release to the netboot package, and initrd preseeding.  A temporary
directory serves as the mirror; gpgv is faked, dpkg-deb runs for real."""

from __future__ import annotations

import gzip
import hashlib
import logging
import lzma
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes import RecordingRunner
from vmdebootstrap.errors import BuildError
from vmdebootstrap.host.run import Result
from vmdebootstrap.intent.plan import IsoSpec
from vmdebootstrap.outputs import installer, isomenu

MIRROR = "http://mirror.example/debian"
SUITE = "dists/bookworm"
PACKAGES = "main/binary-amd64/Packages"
POOL = "pool/main/d/debian-installer-netboot-images"
VALID = "[GNUPG:] GOODSIG x\n[GNUPG:] VALIDSIG ABC\n"
BEGIN_SIG = "-----BEGIN PGP SIGNATURE-----"

def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- reading cpio archives back -----------------------------------------------------------

@dataclass(frozen=True)
class Member:
    name: str
    mode: int
    uid: int
    gid: int
    mtime: int
    data: bytes


def parse_newc(data: bytes, pos: int = 0) -> tuple[list[Member], int]:
    """The members of the newc archive at ``pos`` and where it ends."""
    members: list[Member] = []
    while True:
        assert pos % 4 == 0 and data[pos:pos + 6] == b"070701", pos
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name = data[pos + 110: pos + 110 + namesize]
        assert name.endswith(b"\0")
        pos += 110 + namesize
        pos += -pos % 4
        body = data[pos: pos + filesize]
        pos += filesize
        pos += -pos % 4
        if name == b"TRAILER!!!\0":
            return members, pos
        members.append(Member(name[:-1].decode(), fields[1], fields[2], fields[3],
                              fields[5], body))


def _initrd(text: str) -> bytes:
    return installer.deterministic_gzip(installer.newc_archive([("init", text.encode())], 0))


# ---- a mirror in a directory --------------------------------------------------------------

def build_deb(tmp: Path, *, number: str = "12", arch: str = "amd64", gtk: bool = True,
              text: bool = True, version: str = "20230607+deb12u99") -> Path:
    package = f"debian-installer-{number}-netboot-{arch}"
    flavours = [f for f, on in (("text", text), ("gtk", gtk)) if on]
    # Same name, different content: each .deb gets its own directory.
    where = tmp / f"{number}-{'+'.join(flavours) or 'none'}"
    tree = where / "tree"
    images = tree / installer.IMAGES / number / arch
    for flavour in flavours:
        d = images / flavour / "debian-installer" / arch
        d.mkdir(parents=True)
        (d / "linux").write_bytes(f"{flavour} kernel".encode())
        (d / "initrd.gz").write_bytes(_initrd(f"{flavour} initrd"))
        (images / flavour / "pxelinux.0").symlink_to(f"debian-installer/{arch}/pxelinux.0")
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: Test <test@example.org>\nDescription: test\n")
    deb = where / f"{package}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-b", str(tree), str(deb)],
                   check=True, capture_output=True)
    return deb


def stanza(deb: Path, *, package: str | None = None, sha: str | None = None,
           filename: str | None = None) -> str:
    name = package or deb.name.split("_")[0]
    return (f"Package: {name}\nSource: debian-installer-netboot-images\n"
            f"Version: {deb.name.split('_')[1]}\nInstalled-Size: 1\n"
            "Description: netboot images\n of d-i\n"
            f"Filename: {filename or f'{POOL}/{deb.name}'}\nSize: {deb.stat().st_size}\n"
            f"SHA256: {sha or _sha(deb.read_bytes())}\n")


class Mirror:
    """A mirror tree under ``root``, served by calling the object like urllib_fetch."""

    def __init__(self, root: Path, debs: list[Path], *, stanzas: list[str] | None = None,
                 suffix: str = ".xz", by_hash: bool = False, codename: str = "bookworm",
                 inrelease: bool = True) -> None:
        self.root = root
        self.fetched: list[str] = []
        for deb in debs:
            self.put(f"{POOL}/{deb.name}", deb.read_bytes())
        others = "Package: hello\nVersion: 1\nFilename: pool/main/h/hello.deb\n"
        text = "\n".join([others, *(stanzas if stanzas is not None else map(stanza, debs))])
        data = {".xz": lzma.compress, ".gz": gzip.compress, "": bytes}[suffix](text.encode())
        index = f"{PACKAGES}{suffix}"
        self.put(f"{SUITE}/{index}", data)
        if by_hash:
            self.put(f"{SUITE}/main/binary-amd64/by-hash/SHA256/{_sha(data)}", data)
        self.release = (
            f"Origin: Debian\nSuite: oldstable\nCodename: {codename}\n"
            + ("Acquire-By-Hash: yes\n" if by_hash else "")
            + f"MD5Sum:\n {hashlib.md5(data).hexdigest()} {len(data)} {index}\n"
            + f"SHA256:\n {'0' * 64} 1 main/binary-i386/Packages\n"
            + f" {_sha(data)} {len(data):>9} {index}\n")
        if inrelease:
            self.put(f"{SUITE}/InRelease", clearsign(self.release))
        else:
            self.put(f"{SUITE}/Release", self.release.encode())
            self.put(f"{SUITE}/Release.gpg", b"signature")

    def put(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def __call__(self, url: str, dest: Path) -> None:
        self.fetched.append(url)
        assert url.startswith(MIRROR + "/"), url
        source = self.root / url.removeprefix(MIRROR + "/")
        if not source.is_file():
            raise BuildError(f"could not fetch {url}: HTTP Error 404: Not Found")
        shutil.copyfile(source, dest)


def clearsign(text: str) -> bytes:
    return (f"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{text}"
            f"{BEGIN_SIG}\n\nc2lnbmF0dXJl\n-----END PGP SIGNATURE-----\n").encode()


class Host(RecordingRunner):
    """gpgv answers ``status`` and, like the real one, writes out only the
    signed text of a clearsigned file; dpkg-deb runs for real."""

    def __init__(self, status: str = VALID) -> None:
        super().__init__({"gpgv": status})

    def run(self, argv, **kw):  # type: ignore[no-untyped-def]
        result: Result = super().run(argv, **kw)
        args = self.calls[-1]
        if args[0] == "gpgv" and "--output" in args:
            signed = Path(args[-1]).read_text()
            body = signed.split("\n\n", 1)[1].split(BEGIN_SIG, 1)[0]
            Path(args[args.index("--output") + 1]).write_text(body)
        elif args[0] == "dpkg-deb":
            subprocess.run(args, check=True, capture_output=True)
        return result


def _spec(**kw: object) -> IsoSpec:
    return IsoSpec(arch="amd64", distribution="bookworm", installer=True,
                   mirror=MIRROR + "/", **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb (dpkg) is not installed")
    tmp = tmp_path_factory.mktemp("debs")
    return {"gtk": build_deb(tmp), "text": build_deb(tmp, gtk=False),
            "none": build_deb(tmp, gtk=False, text=False),
            "13": build_deb(tmp, number="13", version="20250803+deb13u1")}


def _fetch(tmp_path: Path, mirror: Mirror, runner: Host | None = None,
           **kw: object) -> installer.Installer:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    return installer.fetch_installer(runner or Host(), _spec(**kw), tmp_path / "install.amd",
                                     scratch, fetch=mirror, keyring=Path("/k.gpg"))


# ---- the chain ----------------------------------------------------------------------------

def test_happy_path(tmp_path: Path, debs: dict[str, Path],
                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "vmdebootstrap.outputs.installer")
    mirror = Mirror(tmp_path / "m", [debs["gtk"]])
    runner = Host()
    got = _fetch(tmp_path, mirror, runner)
    dest = tmp_path / "install.amd"
    assert got.package == "debian-installer-12-netboot-amd64"
    assert got.version == "20230607+deb12u99" and got.gtk
    assert got.initrds == (dest / "initrd.gz", dest / "gtk/initrd.gz")
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == [
        "gtk", "gtk/initrd.gz", "gtk/vmlinuz", "initrd.gz", "vmlinuz"]
    assert (dest / "vmlinuz").read_bytes() == b"text kernel"
    assert (dest / "gtk/vmlinuz").read_bytes() == b"gtk kernel"
    assert (dest / "initrd.gz").read_bytes() == _initrd("text initrd")
    assert mirror.fetched == [f"{MIRROR}/{SUITE}/InRelease", f"{MIRROR}/{SUITE}/{PACKAGES}.xz",
                              f"{MIRROR}/{POOL}/{debs['gtk'].name}"]
    gpgv, dpkg = runner.calls
    assert gpgv[:5] == ["gpgv", "--status-fd", "1", "--keyring", "/k.gpg"]
    assert gpgv[-3:] == ["--output", str(tmp_path / "scratch/Release"),
                         str(tmp_path / "scratch/InRelease")]
    assert dpkg[:2] == ["dpkg-deb", "-x"]
    # Only the small Release files stay behind in scratch.
    assert sorted(p.name for p in (tmp_path / "scratch").iterdir()) == ["InRelease", "Release"]
    assert "debian-installer-12-netboot-amd64 20230607+deb12u99" in caplog.text


def test_release_and_detached_signature_without_inrelease(tmp_path: Path,
                                                          debs: dict[str, Path]) -> None:
    mirror = Mirror(tmp_path / "m", [debs["gtk"]], inrelease=False)
    runner = Host()
    assert _fetch(tmp_path, mirror, runner).gtk
    scratch = tmp_path / "scratch"
    assert runner.calls[0][-2:] == [str(scratch / "Release.gpg"), str(scratch / "Release")]
    assert mirror.fetched[:3] == [f"{MIRROR}/{SUITE}/{n}"
                                  for n in ("InRelease", "Release", "Release.gpg")]


@pytest.mark.parametrize("suffix", [".xz", ".gz", ""])
def test_any_listed_packages_index(tmp_path: Path, debs: dict[str, Path], suffix: str) -> None:
    mirror = Mirror(tmp_path / "m", [debs["gtk"]], suffix=suffix)
    _fetch(tmp_path, mirror)
    assert f"{MIRROR}/{SUITE}/{PACKAGES}{suffix}" in mirror.fetched


def test_prefers_xz_index(tmp_path: Path) -> None:
    listed = {f"{PACKAGES}{s}": ("0" * 64, 1) for s in ("", ".gz", ".xz")}
    assert installer.packages_index(listed, "amd64", "R") == f"{PACKAGES}.xz"
    del listed[f"{PACKAGES}.xz"]
    assert installer.packages_index(listed, "amd64", "R") == f"{PACKAGES}.gz"
    with pytest.raises(BuildError, match="R lists no main/binary-arm64/Packages"):
        installer.packages_index(listed, "arm64", "R")


def test_packages_hash_mismatch(tmp_path: Path, debs: dict[str, Path]) -> None:
    mirror = Mirror(tmp_path / "m", [debs["gtk"]])
    mirror.put(f"{SUITE}/{PACKAGES}.xz", lzma.compress(stanza(debs["gtk"]).encode()))
    with pytest.raises(BuildError, match=rf"{PACKAGES}\.xz: SHA256 mismatch"):
        _fetch(tmp_path, mirror)
    assert not (tmp_path / "install.amd").exists()


def test_deb_hash_mismatch(tmp_path: Path, debs: dict[str, Path]) -> None:
    mirror = Mirror(tmp_path / "m", [debs["gtk"]])
    mirror.put(f"{POOL}/{debs['gtk'].name}", debs["text"].read_bytes())
    with pytest.raises(BuildError, match=re.escape(f"{POOL}/{debs['gtk'].name}: SHA256 mismatch")):
        _fetch(tmp_path, mirror)
    assert not (tmp_path / "install.amd").exists()


def test_package_missing(tmp_path: Path, debs: dict[str, Path]) -> None:
    mirror = Mirror(tmp_path / "m", [debs["gtk"]], stanzas=[])
    with pytest.raises(BuildError) as exc:
        _fetch(tmp_path, mirror)
    assert f"{MIRROR}/{SUITE}/{PACKAGES}.xz has no debian-installer-N-netboot-amd64" \
        in str(exc.value)


def test_more_than_one_package(tmp_path: Path, debs: dict[str, Path]) -> None:
    mirror = Mirror(tmp_path / "m", [debs["gtk"], debs["13"]])
    with pytest.raises(BuildError, match="expected one"):
        _fetch(tmp_path, mirror)


def test_other_release_number(tmp_path: Path, debs: dict[str, Path]) -> None:
    got = _fetch(tmp_path, Mirror(tmp_path / "m", [debs["13"]]))
    assert (got.package, got.version) == ("debian-installer-13-netboot-amd64", "20250803+deb13u1")


def test_gtk_missing(tmp_path: Path, debs: dict[str, Path]) -> None:
    got = _fetch(tmp_path, Mirror(tmp_path / "m", [debs["text"]]))
    dest = tmp_path / "install.amd"
    assert not got.gtk and got.initrds == (dest / "initrd.gz",)
    assert sorted(p.name for p in dest.iterdir()) == ["initrd.gz", "vmlinuz"]
    entries = isomenu.menu_entries(arch="amd64", installer_dir="install.amd",
                                   installer_gtk=got.gtk)
    assert [e.ident for e in entries] == ["live", "failsafe", "verify", "install"]


def test_package_without_text_images(tmp_path: Path, debs: dict[str, Path]) -> None:
    with pytest.raises(BuildError, match="has no usr/lib/debian-installer/images/12/amd64/text"):
        _fetch(tmp_path, Mirror(tmp_path / "m", [debs["none"]]))


def test_invalid_signature(tmp_path: Path, debs: dict[str, Path]) -> None:
    mirror = Mirror(tmp_path / "m", [debs["gtk"]])
    with pytest.raises(BuildError, match=r"InRelease has no valid signature from /k\.gpg"):
        _fetch(tmp_path, mirror, Host("[GNUPG:] NEWSIG\n[GNUPG:] BADSIG x\n"))
    assert mirror.fetched == [f"{MIRROR}/{SUITE}/InRelease"]


def test_failing_gpgv_propagates(tmp_path: Path, debs: dict[str, Path]) -> None:
    class Failing(Host):
        def run(self, argv, **kw):  # type: ignore[no-untyped-def]
            raise BuildError("gpgv failed")

    with pytest.raises(BuildError, match="gpgv failed"):
        _fetch(tmp_path, Mirror(tmp_path / "m", [debs["gtk"]]), Failing())


def test_release_of_another_suite(tmp_path: Path, debs: dict[str, Path]) -> None:
    mirror = Mirror(tmp_path / "m", [debs["gtk"]], codename="trixie")
    with pytest.raises(BuildError, match="is for oldstable/trixie, not bookworm"):
        _fetch(tmp_path, mirror)


def test_text_outside_the_signature_is_ignored(tmp_path: Path, debs: dict[str, Path]) -> None:
    mirror = Mirror(tmp_path / "m", [debs["gtk"]])
    forged = lzma.compress(stanza(debs["gtk"]).replace("Version: ", "Version: 6.6.6").encode())
    mirror.put(f"{SUITE}/{PACKAGES}.xz", forged)
    signed = (mirror.root / SUITE / "InRelease").read_bytes()
    # Read as a whole, this file would vouch for the forged index.
    mirror.put(f"{SUITE}/InRelease",
               signed + f"SHA256:\n {_sha(forged)} {len(forged)} {PACKAGES}.xz\n".encode())
    assert installer.parse_release_sha256(
        (mirror.root / SUITE / "InRelease").read_text())[f"{PACKAGES}.xz"][0] == _sha(forged)
    with pytest.raises(BuildError, match=rf"{PACKAGES}\.xz: SHA256 mismatch"):
        _fetch(tmp_path, mirror)


@pytest.mark.parametrize("plain", [False, True])
def test_by_hash(tmp_path: Path, debs: dict[str, Path], plain: bool) -> None:
    mirror = Mirror(tmp_path / "m", [debs["gtk"]], by_hash=True)
    by_hash = next((mirror.root / SUITE).rglob("by-hash/SHA256/*"))
    (by_hash if plain else mirror.root / SUITE / f"{PACKAGES}.xz").unlink()
    assert _fetch(tmp_path, mirror).gtk
    index_urls = [u for u in mirror.fetched if "/binary-amd64/" in u]
    assert "/by-hash/SHA256/" in index_urls[0]
    assert len(index_urls) == (2 if plain else 1)


@pytest.mark.parametrize("filename", ["../../etc/x.deb", "pool/../x.deb", "pool/x.tar"])
def test_odd_filename_refused(tmp_path: Path, debs: dict[str, Path], filename: str) -> None:
    mirror = Mirror(tmp_path / "m", [debs["gtk"]],
                    stanzas=[stanza(debs["gtk"], filename=filename)])
    with pytest.raises(BuildError, match="unexpected Filename"):
        _fetch(tmp_path, mirror)


def test_stanza_parsing_ignores_similar_names() -> None:
    text = "\n".join([
        "Package: debian-installer-12-netboot-amd64-extra\nVersion: 1\n",
        "Package: debian-installer-12-netboot-arm64\nVersion: 2\n",
        f"Package: debian-installer-12-netboot-amd64\nVersion: 3\nFilename: {POOL}/d.deb\n"
        f"Description: x\n Version: 4\nSHA256: {'a' * 64}\n",
    ])
    fields = installer.netboot_stanza(text, "amd64", "P")
    assert (fields["Version"], fields["SHA256"]) == ("3", "a" * 64)
    with pytest.raises(BuildError, match="arm64 lacks Filename, SHA256"):
        installer.netboot_stanza(text, "arm64", "P")


# ---- preseeding ---------------------------------------------------------------------------

def test_newc_archive_reads_back() -> None:
    data = installer.newc_archive([("preseed.cfg", b"d-i x string y\n"), ("a", b"")], 1234)
    members, end = parse_newc(data)
    assert end == len(data) and len(data) % 4 == 0
    assert members == [Member("preseed.cfg", 0o100644, 0, 0, 1234, b"d-i x string y\n"),
                       Member("a", 0o100644, 0, 0, 1234, b"")]


def test_newc_archive_refuses_a_timestamp_it_cannot_hold() -> None:
    with pytest.raises(BuildError, match="does not fit"):
        installer.newc_archive([("a", b"")], 1 << 32)


def test_preseed_archive_unpacks_with_cpio(tmp_path: Path) -> None:
    preseed = b"d-i debian-installer/locale string en_US.UTF-8\n"
    archive = gzip.decompress(installer.preseed_archive(preseed, 1700000000))
    assert parse_newc(archive)[0] == [Member("preseed.cfg", 0o100644, 0, 0, 1700000000, preseed)]
    if shutil.which("cpio") is None:
        pytest.skip("cpio is not installed: checked with our own reader only")
    listing = subprocess.run(["cpio", "-i", "-t", "-v", "--quiet"], input=archive,
                             capture_output=True, check=True).stdout.decode()
    assert listing.split()[0] == "-rw-r--r--" and listing.split()[-1] == "preseed.cfg"
    content = subprocess.run(["cpio", "-i", "--to-stdout", "--quiet", "preseed.cfg"],
                             input=archive, capture_output=True, check=True).stdout
    assert content == preseed


def test_preseed_archive_is_deterministic() -> None:
    one = installer.preseed_archive(b"d-i x string y\n", 1700000000)
    assert one == installer.preseed_archive(b"d-i x string y\n", 1700000000)
    assert one != installer.preseed_archive(b"d-i x string y\n", 1700000001)
    assert one[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # no name, mtime 0


def test_append_preseed_adds_a_second_archive(tmp_path: Path) -> None:
    initrd = tmp_path / "initrd.gz"
    original = _initrd("text initrd")
    initrd.write_bytes(original)
    preseed = tmp_path / "p.cfg"
    preseed.write_bytes(b"d-i x string y\n")
    installer.append_preseed([initrd], preseed, 42)
    data = initrd.read_bytes()
    assert data.startswith(original)
    assert data[len(original):] == installer.preseed_archive(b"d-i x string y\n", 42)
    # As the kernel sees it: one stream of two archives, the first unchanged.
    unpacked = gzip.decompress(data)
    first, end = parse_newc(unpacked)
    second, end2 = parse_newc(unpacked, end)
    assert [m.name for m in first] == ["init"] and end2 == len(unpacked)
    assert second == [Member("preseed.cfg", 0o100644, 0, 0, 42, b"d-i x string y\n")]


@pytest.mark.parametrize("epoch", [None, 1700000000])
def test_stage_installer_preseeds_every_initrd(tmp_path: Path, debs: dict[str, Path],
                                               epoch: int | None) -> None:
    preseed = tmp_path / "p.cfg"
    preseed.write_bytes(b"d-i x string y\n")
    (tmp_path / "scratch").mkdir()
    spec = _spec(preseed=preseed, source_date_epoch=epoch)
    dest = tmp_path / "install.amd"
    gtk = installer.stage_installer(Host(), spec, dest, tmp_path / "scratch",
                                    fetch=Mirror(tmp_path / "m", [debs["gtk"]]))
    assert gtk
    archive = installer.preseed_archive(b"d-i x string y\n", epoch or 0)
    for flavour, initrd in (("text", dest / "initrd.gz"), ("gtk", dest / "gtk/initrd.gz")):
        assert initrd.read_bytes() == _initrd(f"{flavour} initrd") + archive


def test_stage_installer_without_preseed_keeps_initrds(tmp_path: Path,
                                                       debs: dict[str, Path]) -> None:
    (tmp_path / "scratch").mkdir()
    dest = tmp_path / "install.amd"
    gtk = installer.stage_installer(Host(), _spec(), dest, tmp_path / "scratch",
                                    fetch=Mirror(tmp_path / "m", [debs["text"]]))
    assert not gtk
    assert (dest / "initrd.gz").read_bytes() == _initrd("text initrd")
