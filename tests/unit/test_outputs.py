"""outputs/files.py and outputs/kinds.py: tar and mksquashfs command lines,
the kernel pick, the checks that catch a broken squashfs or tarball, owners
and output paths."""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.fakes import RecordingRunner
from vmdebootstrap.errors import BuildError
from vmdebootstrap.host.run import CommandError, Result, SubprocessRunner
from vmdebootstrap.outputs import files as outputs
from vmdebootstrap.outputs.files import (
    MIN_SQUASHFS,
    check_free_space,
    check_squash_dir,
    check_tarball,
    find_kernel,
    mksquashfs_argv,
    tar_argv,
)
from vmdebootstrap.outputs.kinds import KINDS, TARBALL_SUFFIXES, chown_outputs
from vmdebootstrap.plan import Plan

PlanOf = Callable[..., Plan]
ROOT = Path("/srv/build/root")


# --- tar ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "compress"), [
    ("root.tar", []),
    ("root.tar.gz", ["--use-compress-program=gzip -n"]),
    ("root.tgz", ["--use-compress-program=gzip -n"]),
    ("root.tar.xz", ["--use-compress-program=xz -T0"]),
    ("root.txz", ["--use-compress-program=xz -T0"]),
    ("root.tar.zst", ["--use-compress-program=zstd -T0 -q"]),
    ("root.tar.bz2", ["--bzip2"]),
    # 1.x's tar -a: the last suffix picks, and a name without one is a plain tar
    ("root.gz", ["--use-compress-program=gzip -n"]),
    ("root.taz", ["--use-compress-program=gzip -n"]),
    ("root.xz", ["--use-compress-program=xz -T0"]),
    ("root.tzst", ["--use-compress-program=zstd -T0 -q"]),
    ("root.tbz2", ["--bzip2"]),
    ("root.tbz", ["--bzip2"]),
    ("root.tar.lzma", ["--use-compress-program=xz --format=lzma"]),
    ("root.tlz", ["--use-compress-program=xz --format=lzma"]),
    ("root", []),
    ("root.zip", []),
    ("root.tar.gz.part", []),
    ("root.img", []),
])
def test_tar_argv_per_suffix(name: str, compress: list[str]) -> None:
    output = Path("/srv/out") / name
    argv = tar_argv(ROOT, output)
    assert argv[:4] == ["tar", "--create", "--file", str(output)]
    for flag in ("--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls",
                 "--sort=name"):
        assert flag in argv
    assert [a for a in argv if "compress" in a or a == "--bzip2"] == compress
    assert argv[-3:] == ["--directory", str(ROOT), "."]  # relative member names


def test_tarball_suffixes_are_the_compressing_ones() -> None:
    """TARBALL_SUFFIXES lists what tar_argv compresses, and nothing else."""
    for suffix in TARBALL_SUFFIXES:
        assert [a for a in tar_argv(ROOT, Path("r" + suffix))
                if "compress" in a or a == "--bzip2"], suffix
    for plain in (".tar", ".zip", ".img", ".tar.part", ""):
        assert not Path("r" + plain).name.endswith(TARBALL_SUFFIXES)


@pytest.mark.skipif(shutil.which("tar") is None or shutil.which("gzip") is None,
                    reason="needs tar and gzip")
@pytest.mark.parametrize(("name", "gzipped"), [
    ("root.any-name", False), ("root", False), ("root.tar", False), ("root.gz", True),
])
def test_tarball_of_any_name_round_trip(tmp_path: Path, name: str, gzipped: bool) -> None:
    """A real tar: the name picks gzip or a plain tar, check_tarball lists it back."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("debian\n")
    staged = tmp_path / ".staged.part"  # the publish step's temporary name
    runner = SubprocessRunner()
    outputs.write_tarball(runner, root, staged, name)
    assert (staged.read_bytes()[:2] == b"\x1f\x8b") is gzipped
    check_tarball(runner, staged, name)
    data = staged.read_bytes()
    staged.write_bytes(data[:min(700, len(data) // 2)])  # truncated: must not list back
    with pytest.raises(CommandError):
        check_tarball(runner, staged, name)


def test_write_tarball_runs_tar(tmp_path: Path) -> None:
    runner = RecordingRunner()
    outputs.write_tarball(runner, ROOT, tmp_path / "r.tar.xz")
    assert runner.calls == [tar_argv(ROOT, tmp_path / "r.tar.xz")]


# --- mksquashfs -----------------------------------------------------------------------


def test_mksquashfs_argv_xz_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs.os, "cpu_count", lambda: 7)
    argv = mksquashfs_argv(ROOT, Path("/o/filesystem.squashfs"), "xz")
    assert argv[:3] == ["mksquashfs", str(ROOT), "/o/filesystem.squashfs"]
    assert "-noappend" in argv and "-no-progress" not in argv  # the status line reads it
    assert argv[argv.index("-comp") + 1] == "xz"
    assert argv[argv.index("-b") + 1] == "1M"
    assert "-Xcompression-level" not in argv
    assert argv[argv.index("-processors") + 1] == "7"


@pytest.mark.parametrize(("compression", "comp", "level"), [
    ("zstd:19", "zstd", "19"), ("gzip:9", "gzip", "9"), ("lz4", "lz4", None),
    ("lzo:1", "lzo", "1"),
])
def test_mksquashfs_argv_compression_and_level(compression: str, comp: str,
                                              level: str | None) -> None:
    argv = mksquashfs_argv(ROOT, Path("/o/fs"), compression, processors=3)
    assert argv[argv.index("-comp") + 1] == comp
    if level is None:
        assert "-Xcompression-level" not in argv
    else:
        assert argv[argv.index("-Xcompression-level") + 1] == level
    assert "-b" not in argv
    assert argv[argv.index("-processors") + 1] == "3"
    assert argv.count("-processors") == 1


def test_mksquashfs_argv_unknown_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs.os, "cpu_count", lambda: None)
    argv = mksquashfs_argv(ROOT, Path("/o/fs"), "xz")
    assert argv[argv.index("-processors") + 1] == "1"


# --- kernels --------------------------------------------------------------------------------


def boot_with(root: Path, versions: Sequence[str], initrds: Sequence[str] | None = None) -> Path:
    boot = root / "boot"
    boot.mkdir(parents=True)
    for v in versions:
        (boot / f"vmlinuz-{v}").write_bytes(f"kernel {v}".encode())
        (boot / f"config-{v}").write_text("")
    for v in versions if initrds is None else initrds:
        (boot / f"initrd.img-{v}").write_bytes(f"initrd {v}".encode())
    return boot


def test_find_kernel_picks_the_newest(tmp_path: Path) -> None:
    boot = boot_with(tmp_path, ["5.10.0-28-amd64", "6.1.0-9-amd64", "6.1.0-10-amd64"])
    kernel, initrd = find_kernel(tmp_path)
    assert kernel == boot / "vmlinuz-6.1.0-10-amd64"
    assert initrd == boot / "initrd.img-6.1.0-10-amd64"


def test_find_kernel_arm64_and_vmlinux(tmp_path: Path) -> None:
    boot = boot_with(tmp_path, ["6.1.0-9-arm64", "6.12.38+deb13-arm64"])
    assert find_kernel(tmp_path)[0] == boot / "vmlinuz-6.12.38+deb13-arm64"


def test_find_kernel_none(tmp_path: Path) -> None:
    (tmp_path / "boot").mkdir()
    with pytest.raises(BuildError, match=r"no kernel in .*boot.*kernel package"):
        find_kernel(tmp_path)
    with pytest.raises(BuildError, match="no kernel"):
        find_kernel(tmp_path / "missing")


def test_find_kernel_without_initrd(tmp_path: Path) -> None:
    boot_with(tmp_path, ["6.1.0-10-amd64"], initrds=[])
    with pytest.raises(BuildError, match=r"no initrd for kernel 6\.1\.0-10-amd64"):
        find_kernel(tmp_path)


def test_copy_kernel(tmp_path: Path) -> None:
    root = tmp_path / "root"
    boot_with(root, ["6.1.0-9-amd64", "6.1.0-10-amd64"])
    dest = tmp_path / "live"
    dest.mkdir()
    outputs.copy_kernel(root, dest)
    assert sorted(p.name for p in dest.iterdir()) == [
        "initrd.img", "initrd.img-6.1.0-10-amd64", "vmlinuz", "vmlinuz-6.1.0-10-amd64"]
    assert (dest / "vmlinuz").read_bytes() == b"kernel 6.1.0-10-amd64"
    assert (dest / "initrd.img").read_bytes() == b"initrd 6.1.0-10-amd64"


# --- free space and the squashfs size check ---------------------------------------------------


class Usage(NamedTuple):
    total: int
    used: int
    free: int


def tree_with_data(root: Path, size: int = 256 * 1024) -> None:
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/big").write_bytes(os.urandom(size))
    (root / "usr/bin/link").symlink_to("big")


def test_check_free_space_refuses_naming_the_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    tree_with_data(root)
    dest = tmp_path / "out dir"
    dest.mkdir()
    seen: list[str] = []

    def usage(path: str | os.PathLike[str]) -> Usage:
        seen.append(os.fspath(path))
        return Usage(10**12, 10**12, 1024)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    with pytest.raises(BuildError) as info:
        check_free_space(root, dest)
    assert str(dest) in str(info.value)
    assert "not enough free space" in str(info.value)
    assert seen == [str(dest)]


def test_check_free_space_enough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    tree_with_data(root)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**12, 0, 10**12))
    check_free_space(root, tmp_path)
    assert outputs.tree_size(root) >= 256 * 1024


class SquashRunner(RecordingRunner):
    """mksquashfs that writes a file of the given size at its output path."""

    def __init__(self, size: int | None) -> None:
        super().__init__()
        self.size = size

    def run(self, argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> Result:
        result = super().run(argv, **kwargs)  # type: ignore[arg-type]
        if self.size is not None:
            with open(self.calls[-1][2], "wb") as fh:
                fh.truncate(self.size)
        return result


@pytest.fixture
def plenty_of_space(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**12, 0, 10**12))


def squash_stage(stage: Path, size: int | None) -> Path:
    stage.mkdir()
    for name in ("vmlinuz", "initrd.img"):
        (stage / name).write_bytes(b"x")
    if size is not None:
        with open(stage / "filesystem.squashfs", "wb") as fh:
            fh.truncate(size)
    return stage


@pytest.mark.parametrize("size", [None, 0, 4096, MIN_SQUASHFS - 1])
def test_check_squash_dir_rejects_a_tiny_result(tmp_path: Path, size: int | None) -> None:
    runner = RecordingRunner()
    with pytest.raises(BuildError, match="under 1 MiB"):
        check_squash_dir(runner, squash_stage(tmp_path / "live", size))
    assert runner.calls == []


def test_check_squash_dir_reads_the_superblock_back(tmp_path: Path) -> None:
    stage = squash_stage(tmp_path / "live", MIN_SQUASHFS)
    runner = RecordingRunner()
    check_squash_dir(runner, stage)
    assert runner.calls == [["unsquashfs", "-s", str(stage / "filesystem.squashfs")]]
    (stage / "initrd.img").unlink()
    with pytest.raises(BuildError, match=r"lacks initrd\.img"):
        check_squash_dir(runner, stage)


@pytest.mark.parametrize(("name", "program"), [
    ("root.tar.zst", ["--use-compress-program=zstd -T0 -q"]),
    ("root.tar", []),
    ("root.any-name", []),
    ("root.zip", []),
    ("root.tbz2", ["--bzip2"]),
    ("root.tlz", ["--use-compress-program=xz --format=lzma"]),
])
def test_check_tarball_lists_it_back(tmp_path: Path, name: str, program: list[str]) -> None:
    runner = RecordingRunner()
    check_tarball(runner, tmp_path / ".x.part", name)
    assert runner.calls == [["tar", "--list", "--file", str(tmp_path / ".x.part"), *program]]


def test_write_squashfs_runs_mksquashfs(tmp_path: Path, plenty_of_space: None) -> None:
    root = tmp_path / "root"
    tree_with_data(root, 1024)
    output = tmp_path / "live/filesystem.squashfs"
    output.parent.mkdir()
    runner = SquashRunner(4096)
    outputs.write_squashfs(runner, root, output, "zstd:19")
    assert runner.calls[0][:3] == ["mksquashfs", str(root), str(output)]


def test_write_squashfs_accepts_a_real_size(tmp_path: Path, plenty_of_space: None) -> None:
    root = tmp_path / "root"
    tree_with_data(root, 1024)
    output = tmp_path / "filesystem.squashfs"
    outputs.write_squashfs(SquashRunner(MIN_SQUASHFS), root, output, "xz")
    assert output.stat().st_size == MIN_SQUASHFS


def test_write_squashfs_checks_space_first(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    tree_with_data(root)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**12, 10**12, 0))
    runner = SquashRunner(MIN_SQUASHFS)
    with pytest.raises(BuildError, match="not enough free space"):
        outputs.write_squashfs(runner, root, tmp_path / "fs.squashfs", "xz")
    assert runner.calls == []


# --- package list, owner, output paths --------------------------------------------------------


def test_write_pkglist(tmp_path: Path) -> None:
    listing = "bash\t5.2.37-2\tbash\t5.2.37-2\nlibc6\t2.41-12\tglibc\t2.41-12\n"
    runner = RecordingRunner({"dpkg-query": listing})
    dest = tmp_path / "filesystem.packages"
    outputs.write_pkglist(runner, ROOT, dest)
    assert dest.read_text() == listing
    argv = runner.calls[0]
    assert argv[:3] == ["dpkg-query", f"--admindir={ROOT}/var/lib/dpkg", "-W"]
    assert argv[3] == f"-f={outputs.PKGLIST_FORMAT}"


def test_chown_outputs(tmp_path: Path) -> None:
    me = pwd.getpwuid(os.getuid())
    live = tmp_path / "live"
    live.mkdir()
    (live / "vmlinuz").write_text("")
    chown_outputs([live], None)
    chown_outputs([live], me.pw_name)
    assert (live / "vmlinuz").stat().st_uid == me.pw_uid
    with pytest.raises(KeyError):
        chown_outputs([live], "vmdebootstrap-no-such-user")


def test_output_paths(plan_of: PlanOf, out: Path) -> None:
    plan = plan_of("--iso", str(out / "live.iso"), "--squash", str(out / "live"))
    assert plan.targets.paths == [out / "live.iso", out / "live"]
    assert plan_of("--tarball", str(out / "r.tar")).targets.paths == [out / "r.tar"]
    plan = plan_of("--tarball", str(out / "r.tar"), "--pkglist")
    assert plan.targets.paths == [out / "r.tar", out / "r.tar.packages"]


def test_output_kinds() -> None:
    assert [(k.name, k.live, k.bootable, k.holds_root, k.directory) for k in KINDS.values()] == [
        ("image", False, True, True, False), ("tarball", False, False, False, False),
        ("squash", True, False, False, True), ("iso", True, True, False, False)]


def test_output_kind_path_problems(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    (tmp_path / "dir").mkdir()
    assert KINDS["squash"].problems(str(tmp_path / "file")) == [
        f"--squash: {tmp_path / 'file'} exists and is not a directory"]
    assert KINDS["squash"].problems(str(tmp_path / "dir")) == []
    assert "is a directory" in KINDS["iso"].problems(str(tmp_path / "dir"))[0]
    (tmp_path / "root.tar").write_text("")
    assert KINDS["tarball"].problems(str(tmp_path / "root.tar")) == []
    assert KINDS["tarball"].problems(str(tmp_path / "file")) == []  # a plain tar
    assert "is a directory" in KINDS["tarball"].problems(str(tmp_path / "dir"))[0]
    assert KINDS["image"].problems("/dev/null") == [
        "--image: /dev/null exists and is not a regular file; "
        "vmdebootstrap only writes image files"]


def test_reproducible_plan_carries_the_epoch_into_the_iso(plan_of: PlanOf, out: Path) -> None:
    from vmdebootstrap.root.reproducible import reproducible_plan

    plan = reproducible_plan(plan_of("--iso", str(out / "live.iso")), 1700000000)
    assert plan.epoch == 1700000000
    assert plan.iso is not None and plan.iso.source_date_epoch == 1700000000
    assert reproducible_plan(plan_of("--tarball", str(out / "r.tar")), 1).iso is None


def test_outputs_get_the_callers_umask(tmp_path: Path) -> None:
    from vmdebootstrap.outputs.kinds import apply_umask

    iso, squash = tmp_path / "live.iso", tmp_path / "squash"
    iso.write_bytes(b"x")
    iso.chmod(0o644)
    squash.mkdir(mode=0o755)
    (squash / "filesystem.squashfs").write_bytes(b"x")
    (squash / "filesystem.squashfs").chmod(0o644)
    apply_umask([iso, squash], 0o077)
    assert [p.stat().st_mode & 0o777 for p in (iso, squash, squash / "filesystem.squashfs")] \
        == [0o600, 0o700, 0o600]
    apply_umask([iso], 0o022)
    assert iso.stat().st_mode & 0o777 == 0o600, "a umask only takes bits away"
