"""Checksum files: NAME.sha256 beside a tarball or an ISO, SHA256SUMS in a
squash directory, /sha256sum.txt on the ISO for live-boot's
verify-checksums, and the menu entry that asks for it.

Every file is parsed back and compared with hashlib, and handed to the
real ``sha256sum -c`` where the host has it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes import RecordingRunner
from tests.unit.test_iso import FakeTools, needs_host_boot_files
from vmdebootstrap.errors import BuildError
from vmdebootstrap.host import digest, publish
from vmdebootstrap.host.digest import (
    Digests,
    file_sha256,
    parse_sha256sums,
    sha256sums,
    tree_sha256,
)
from vmdebootstrap.host.publish import checksum_path, staged_dir, staged_file
from vmdebootstrap.host.run import Result
from vmdebootstrap.outputs import iso, isomenu
from vmdebootstrap.outputs.kinds import KINDS, Job
from vmdebootstrap.plan import Plan

PlanOf = Callable[..., Plan]
EPOCH = 1700000000

needs_sha256sum = pytest.mark.skipif(shutil.which("sha256sum") is None,
                                     reason="coreutils' sha256sum is not installed")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sums_of(path: Path) -> dict[str, str]:
    return parse_sha256sums(path.read_text())


def sha256sum_c(directory: Path, sums: str) -> subprocess.CompletedProcess[str]:
    """The real tool, run from the output's directory as a user would."""
    return subprocess.run(["sha256sum", "--strict", "-c", sums], cwd=directory,
                          capture_output=True, text=True, check=False)


# --- the format ------------------------------------------------------------------------


def test_format_is_sha256sums_and_parses_back() -> None:
    files = {"vmlinuz": b"kernel", "Z-upper": b"", "live/filesystem.squashfs": b"hsqs" * 99,
             "a b.iso": b"iso"}
    text = sha256sums({name: sha(data) for name, data in files.items()})
    lines = text.split("\n")
    assert lines[-1] == "" and "\r" not in text  # LF after every line
    names = [line.split("  ", 1)[1] for line in lines[:-1]]
    assert names == sorted(files, key=os.fsencode)  # bytewise: 'Z' before 'a'
    assert all(len(line.split("  ", 1)[0]) == 64 for line in lines[:-1])
    assert parse_sha256sums(text) == {name: sha(data) for name, data in files.items()}


@pytest.mark.parametrize("name", ["back\\slash.iso", "new\nline.tar", "carriage\rreturn"])
def test_names_gnu_sha256sum_escapes_round_trip(name: str) -> None:
    text = sha256sums({name: sha(b"x")})
    assert text.startswith("\\") and text.count("\n") == 1
    assert parse_sha256sums(text) == {name: sha(b"x")}


@pytest.mark.parametrize("line", ["abc  name", f"{'0' * 64} name", f"{'g' * 64}  name",
                                  f"{'0' * 64}  "])
def test_parse_refuses_what_is_not_a_checksum_line(line: str) -> None:
    with pytest.raises(ValueError, match="not a sha256sum line"):
        parse_sha256sums(line + "\n")


def counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files digest.Digests reads, in order."""
    reads: list[str] = []
    real = digest.file_sha256

    def reading(path: Path) -> str:
        reads.append(path.name)
        return real(path)

    monkeypatch.setattr(digest, "file_sha256", reading)
    return reads


def test_digests_read_a_file_once_even_after_its_rename(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    reads = counting_reads(monkeypatch)
    staged = tmp_path / "staged.squashfs"
    staged.write_bytes(b"hsqs")
    digests = Digests()
    first = digests.sha256(staged)
    published = staged.rename(tmp_path / "filesystem.squashfs")
    assert digests.sha256(published) == first == sha(b"hsqs")
    assert reads == ["staged.squashfs"]


def test_tree_sha256_lists_regular_files_only(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    (tmp_path / "link").symlink_to("a")
    assert tree_sha256(tmp_path, Digests()) == {"a": sha(b"a")}


# --- beside a file: NAME.sha256 ----------------------------------------------------------


def test_staged_file_publishes_its_checksum_with_it(tmp_path: Path) -> None:
    final = tmp_path / "live.iso"
    with staged_file(final, checksum=True) as tmp:
        tmp.write_bytes(b"an iso")
        assert not checksum_path(final).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.iso", "live.iso.sha256"]
    assert checksum_path(final).read_text() == f"{sha(b'an iso')}  live.iso\n"
    assert stat.S_IMODE(checksum_path(final).stat().st_mode) == 0o644


def test_no_checksum_unless_asked(tmp_path: Path) -> None:
    with staged_file(tmp_path / "r.tar.packages") as tmp:
        tmp.write_text("bash\t5\n")
    assert [p.name for p in tmp_path.iterdir()] == ["r.tar.packages"]


@needs_sha256sum
@pytest.mark.parametrize("name", ["root.tar.gz", "live image.iso", "odd\\name.iso",
                                  "new\nline.tar"])
def test_sha256sum_c_accepts_the_checksum_beside_an_output(tmp_path: Path, name: str) -> None:
    final = tmp_path / name
    with staged_file(final, checksum=True) as tmp:
        tmp.write_bytes(os.urandom(3000))
    done = sha256sum_c(tmp_path, checksum_path(final).name)
    assert done.returncode == 0, done.stdout + done.stderr
    final.write_bytes(b"changed")
    assert sha256sum_c(tmp_path, checksum_path(final).name).returncode == 1


@pytest.mark.parametrize("failure", [RuntimeError("xorriso failed"), KeyboardInterrupt()])
def test_a_failed_build_leaves_neither_output_nor_checksum(tmp_path: Path,
                                                           failure: BaseException) -> None:
    with pytest.raises(type(failure)), staged_file(tmp_path / "live.iso", checksum=True) as tmp:
        tmp.write_bytes(b"half an iso")
        raise failure
    assert list(tmp_path.iterdir()) == []


def test_a_failed_check_keeps_the_previous_output_and_its_checksum(tmp_path: Path) -> None:
    final = tmp_path / "live.iso"
    with staged_file(final, checksum=True) as tmp:
        tmp.write_bytes(b"last week's iso")
    before = checksum_path(final).read_text()

    def check(path: Path) -> None:
        raise BuildError("no EFI El Torito boot entry")

    with pytest.raises(BuildError), staged_file(final, check=check, checksum=True) as tmp:
        tmp.write_bytes(b"a broken iso")
    assert final.read_bytes() == b"last week's iso"
    assert checksum_path(final).read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.iso", "live.iso.sha256"]


def test_a_rebuild_replaces_both(tmp_path: Path) -> None:
    final = tmp_path / "root.tar"
    for data in (b"first", b"second"):
        with staged_file(final, checksum=True) as tmp:
            tmp.write_bytes(data)
    assert sums_of(checksum_path(final)) == {"root.tar": sha(b"second")}


def test_a_checksum_path_that_is_a_directory_fails_before_the_rename(tmp_path: Path) -> None:
    final = tmp_path / "root.tar"
    final.write_bytes(b"old")
    checksum_path(final).mkdir()
    with pytest.raises(OSError), staged_file(final, checksum=True) as tmp:
        tmp.write_bytes(b"new")
    assert final.read_bytes() == b"old"
    assert publish.leftovers(tmp_path) == []


# --- inside a squash directory: SHA256SUMS --------------------------------------------------

SQUASH = {"filesystem.squashfs": b"hsqs" * 1000, "vmlinuz": b"kernel",
          "vmlinuz-6.1.0-13-amd64": b"kernel", "initrd.img": b"initrd",
          "initrd.img-6.1.0-13-amd64": b"initrd", "filesystem.packages": b"bash\t5\n"}


def test_squash_dir_lists_every_file_the_build_wrote(tmp_path: Path) -> None:
    final = tmp_path / "live"
    final.mkdir()
    (final / "notes.txt").write_text("the user's own")
    with staged_dir(final, checksums=True) as stage:
        for name, data in SQUASH.items():
            (stage / name).write_bytes(data)
    assert sums_of(final / "SHA256SUMS") == {name: sha(data) for name, data in SQUASH.items()}
    assert stat.S_IMODE((final / "SHA256SUMS").stat().st_mode) == 0o644


@needs_sha256sum
def test_sha256sum_c_accepts_a_squash_dirs_sums(tmp_path: Path) -> None:
    final = tmp_path / "live"
    with staged_dir(final, checksums=True) as stage:
        for name, data in SQUASH.items():
            (stage / name).write_bytes(data)
    done = sha256sum_c(final, "SHA256SUMS")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK\n") == len(SQUASH)


def test_squash_dir_failure_leaves_the_old_sums(tmp_path: Path) -> None:
    final = tmp_path / "live"
    with staged_dir(final, checksums=True) as stage:
        (stage / "vmlinuz").write_bytes(b"old kernel")
    before = (final / "SHA256SUMS").read_text()
    with pytest.raises(BuildError), staged_dir(final, checksums=True) as stage:
        (stage / "vmlinuz").write_bytes(b"new kernel")
        raise BuildError("mksquashfs failed")
    assert (final / "SHA256SUMS").read_text() == before
    assert publish.leftovers(tmp_path) == []
    with staged_dir(final, checksums=True) as stage:
        (stage / "vmlinuz").write_bytes(b"new kernel")
    assert sums_of(final / "SHA256SUMS") == {"vmlinuz": sha(b"new kernel")}


# --- the output kinds --------------------------------------------------------------------


class BuildTools(RecordingRunner):
    """tar and mksquashfs write what they would; dpkg-query lists a package."""

    def run(self, argv, **kw):  # type: ignore[no-untyped-def]
        result = super().run(argv, **kw)
        args = self.calls[-1]
        if args[:2] == ["tar", "--create"]:
            Path(args[args.index("--file") + 1]).write_bytes(b"a tarball")
        elif args[0] == "mksquashfs":
            Path(args[2]).write_bytes(b"hsqs" + bytes(2 << 20))
        elif args[0] == "dpkg-query":
            return Result(0, "bash\t5.2\tamd64\tbash\t5.2\n")
        return result


def test_a_checksum_path_in_the_way_is_a_problem_before_the_build(tmp_path: Path) -> None:
    (tmp_path / "root.tar.sha256").mkdir()
    (tmp_path / "live/SHA256SUMS").mkdir(parents=True)
    assert KINDS["tarball"].problems(str(tmp_path / "root.tar")) == [
        f"--tarball: {tmp_path / 'root.tar.sha256'} (its checksum file) exists and is not a "
        "regular file; move it away"]
    assert "live/SHA256SUMS (its checksum file)" in KINDS["squash"].problems(
        str(tmp_path / "live"))[0]
    assert KINDS["iso"].problems(str(tmp_path / "live.iso")) == []


def live_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "boot").mkdir(parents=True)
    (root / "boot/vmlinuz-6.1.0-13-amd64").write_bytes(b"kernel")
    (root / "boot/initrd.img-6.1.0-13-amd64").write_bytes(b"initrd")
    return root


def test_tarball_kind_writes_and_returns_its_checksum(plan_of: PlanOf, out: Path,
                                                      tmp_path: Path) -> None:
    plan = plan_of("--tarball", str(out / "root.tar.gz"), "--pkglist")
    written = KINDS["tarball"].write(Job(plan, BuildTools(), live_root(tmp_path), tmp_path))
    assert written == [out / "root.tar.gz", out / "root.tar.gz.sha256",
                       out / "root.tar.gz.packages"]
    assert sums_of(out / "root.tar.gz.sha256") == {"root.tar.gz": sha(b"a tarball")}


def test_squash_kind_writes_sha256sums(plan_of: PlanOf, out: Path, tmp_path: Path) -> None:
    plan = plan_of("--squash", str(out / "live"))
    written = KINDS["squash"].write(Job(plan, BuildTools(), live_root(tmp_path), tmp_path))
    assert written == [out / "live"]
    sums = sums_of(out / "live/SHA256SUMS")
    names = {p.name for p in (out / "live").iterdir()} - {"SHA256SUMS"}
    assert set(sums) == names >= {"filesystem.squashfs", "vmlinuz", "initrd.img",
                                  "vmlinuz-6.1.0-13-amd64", "filesystem.packages"}
    assert all(sums[n] == sha((out / "live" / n).read_bytes()) for n in names)


@needs_host_boot_files
def test_iso_kind_hashes_each_squash_file_once(plan_of: PlanOf, out: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """With --squash kept, the squash files are listed in its SHA256SUMS and
    on the ISO, and read for that once; the ISO gets its .sha256."""
    reads = counting_reads(monkeypatch)
    monkeypatch.setattr(iso, "check_iso", lambda runner, path, arch: None)

    class Tools(FakeTools, BuildTools):
        pass

    plan = plan_of("--iso", str(out / "live.iso"), "--squash", str(out / "live"),
                   "--no-secure-boot")
    (tmp_path / "job").mkdir()
    written = KINDS["iso"].write(Job(plan, Tools(), live_root(tmp_path), tmp_path / "job"))
    assert written[:3] == [out / "live.iso", out / "live.iso.sha256", out / "live"]
    assert sums_of(out / "live.iso.sha256") == {"live.iso": sha((out / "live.iso").read_bytes())}
    squash = sums_of(out / "live/SHA256SUMS")
    assert squash["filesystem.squashfs"] == sha((out / "live/filesystem.squashfs").read_bytes())
    for name in ("filesystem.squashfs", "vmlinuz", "initrd.img", "filesystem.packages"):
        assert reads.count(name) == 1, reads


# --- on the ISO: /sha256sum.txt ------------------------------------------------------------


def staged_tree(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    root = tmp_path / "iso-root"
    files = {".disk/info": b"Debian GNU/Linux", "isolinux/isolinux.bin": b"patched by xorriso",
             "isolinux/isolinux.cfg": b"UI menu.c32", "boot/grub/efi.img": b"\0" * 512,
             "EFI/boot/bootx64.efi": b"MZ", "install.amd/initrd.gz": b"d-i",
             "sha256sum.txt": b"an older list"}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    squash = tmp_path / "squash"
    squash.mkdir(parents=True)
    for name in ("filesystem.squashfs", "vmlinuz"):
        (squash / name).write_bytes(name.encode())
    return root, {f"live/{n}": squash / n for n in ("filesystem.squashfs", "vmlinuz")}


def test_iso_checksums_list_the_tree_and_the_grafts(tmp_path: Path) -> None:
    root, grafts = staged_tree(tmp_path)
    sums = parse_sha256sums(iso.iso_checksums(root, grafts, Digests()))
    assert sums == {
        "./.disk/info": sha(b"Debian GNU/Linux"), "./isolinux/isolinux.cfg": sha(b"UI menu.c32"),
        "./boot/grub/efi.img": sha(b"\0" * 512), "./EFI/boot/bootx64.efi": sha(b"MZ"),
        "./install.amd/initrd.gz": sha(b"d-i"),
        "./live/filesystem.squashfs": sha(b"filesystem.squashfs"),
        "./live/vmlinuz": sha(b"vmlinuz")}
    assert not (root / "live").exists()  # hashed where they are, not copied


class SumsTools(FakeTools):
    """FakeTools that keeps the staged sha256sum.txt and file list as
    xorriso would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.sums = ""
        self.files: dict[str, bytes] = {}
        self.mtime = 0

    def run(self, argv, **kw):  # type: ignore[no-untyped-def]
        if os.fspath(argv[0]) == "xorriso":
            root = Path(next(os.fspath(a) for a in argv if os.fspath(a).startswith("/="))[2:])
            self.sums = (root / "sha256sum.txt").read_text()
            self.mtime = int((root / "sha256sum.txt").stat().st_mtime)
            self.files = {str(p.relative_to(root)): p.read_bytes()
                          for p in root.rglob("*") if p.is_file()}
        return super().run(argv, **kw)


def squash_dir(tmp_path: Path) -> Path:
    squash = tmp_path / "squash"
    squash.mkdir(parents=True)
    for name in ("filesystem.squashfs", "vmlinuz", "initrd.img", "filesystem.packages"):
        (squash / name).write_bytes(name.encode() * 10)
    return squash


@needs_host_boot_files
def test_build_iso_stages_sha256sum_txt(tmp_path: Path) -> None:
    runner = SumsTools()
    squash = squash_dir(tmp_path)
    spec = iso.IsoSpec(arch="amd64", distribution="bookworm", source_date_epoch=EPOCH)
    iso.build_iso(runner, spec, squash, tmp_path / "l.iso", tmp_path / "work")
    sums = parse_sha256sums(runner.sums)
    staged = {f"./{k}": sha(v) for k, v in runner.files.items()
              if k not in ("sha256sum.txt", "isolinux/isolinux.bin")}
    grafted = {f"./live/{p.name}": sha(p.read_bytes()) for p in squash.iterdir()}
    assert sums == staged | grafted
    assert {"./boot/grub/efi.img", "./EFI/boot/bootx64.efi", "./boot/grub/grub.cfg"} <= set(sums)
    assert runner.mtime == EPOCH
    assert runner.sums == sha256sums({k: v for k, v in sums.items()})  # sorted, LF


@needs_host_boot_files
def test_sha256sum_txt_is_reproducible(tmp_path: Path) -> None:
    spec = iso.IsoSpec(arch="amd64", distribution="bookworm", source_date_epoch=EPOCH,
                       serial_console=True)
    seen = []
    for n in (1, 2):
        runner = SumsTools()
        iso.build_iso(runner, spec, squash_dir(tmp_path / f"b{n}"), tmp_path / f"{n}.iso",
                      tmp_path / f"work{n}")
        seen.append((runner.sums, runner.files))
    assert seen[0] == seen[1]
    assert any(k.startswith("./.disk/id/") for k in parse_sha256sums(seen[0][0]))


# --- the menu entry ----------------------------------------------------------------------


def test_verify_entry_follows_fail_safe_and_live_stays_default() -> None:
    entries = isomenu.menu_entries(arch="amd64", installer_dir="install.amd")
    assert [e.ident for e in entries] == ["live", "failsafe", "verify", "install"]
    verify = entries[2]
    assert verify.title == "Live system (verify the medium)"
    assert (verify.kernel, verify.initrd) == ("/live/vmlinuz", "/live/initrd.img")
    assert verify.append == ("boot=live", "components", "verify-checksums")
    assert not verify.default and entries[0].default


def test_verify_entry_keeps_console_and_kernel_append() -> None:
    verify = isomenu.menu_entries(arch="arm64", serial_console=True, serial_tty="ttyAMA0",
                                  kernel_append=("live-config.hostname=x",))[2]
    assert verify.append == ("boot=live", "components", "verify-checksums", "console=tty0",
                             "console=ttyAMA0,115200n8", "live-config.hostname=x")


def test_verify_entry_in_both_menus() -> None:
    entries = isomenu.menu_entries(arch="amd64")
    isolinux = isomenu.isolinux_cfg(entries, title="T", serial_console=False, splash=False)
    assert ("LABEL verify\n  MENU LABEL Live system (verify the medium)\n"
            "  LINUX /live/vmlinuz\n  INITRD /live/initrd.img\n"
            "  APPEND boot=live components verify-checksums\n") in isolinux
    assert isolinux.index("LABEL failsafe") < isolinux.index("LABEL verify")
    assert "DEFAULT live\n" in isolinux
    grub = isomenu.grub_cfg(entries, title="T", serial_console=False, splash=False, font=False)
    assert ("menuentry 'Live system (verify the medium)' --id verify {\n"
            "  linux /live/vmlinuz boot=live components verify-checksums\n"
            "  initrd /live/initrd.img\n}") in grub
    assert grub.index("--id failsafe") < grub.index("--id verify")
    assert "set default=0\n" in grub


def test_file_sha256_of_a_sparse_file_is_the_plain_hash(tmp_path: Path) -> None:
    """Holes are hashed as zeros without being read: same digest as reading all."""
    path = tmp_path / "sparse.img"
    with path.open("wb") as fh:
        fh.write(os.urandom(3000))
        fh.seek(5 << 20)
        fh.write(os.urandom(3 << 20))
        fh.seek(40 << 20)
        fh.write(b"end")
    os.truncate(path, (40 << 20) + 100)  # a hole at the end, too
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    os.truncate(path, 0)
    assert file_sha256(path) == hashlib.sha256(b"").hexdigest()
    os.truncate(path, 3 << 20)  # nothing but a hole
    assert file_sha256(path) == hashlib.sha256(bytes(3 << 20)).hexdigest()
