"""host/publish.py: every output and cache entry appears by one staged,
checked rename; a failure never touches a previous output."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest

from vmdebootstrap.errors import BuildError
from vmdebootstrap.host.publish import leftovers, scratch_file, staged_dir, staged_file

# --- staged_file -------------------------------------------------------------------


def test_staged_file_renames_on_success(tmp_path: Path) -> None:
    final = tmp_path / "out/root.tar.gz"
    with staged_file(final) as tmp:
        assert tmp.parent == final.parent
        assert tmp.name != final.name
        assert not final.exists()
        tmp.write_bytes(b"data")
    assert final.read_bytes() == b"data"
    assert stat.S_IMODE(final.stat().st_mode) == 0o644
    assert [p.name for p in final.parent.iterdir()] == ["root.tar.gz"]


def test_staged_file_removes_the_temp_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "root.tar.gz"
    with pytest.raises(RuntimeError, match="tar failed"), staged_file(final) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("tar failed")
    assert list(tmp_path.iterdir()) == []


def test_staged_file_failure_keeps_an_older_output(tmp_path: Path) -> None:
    final = tmp_path / "root.tar"
    final.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), staged_file(final) as tmp:
        tmp.write_bytes(b"new, half")
        raise KeyboardInterrupt
    assert final.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["root.tar"]


def test_staged_file_temp_removed_by_writer(tmp_path: Path) -> None:
    final = tmp_path / "x.tar"
    with pytest.raises(OSError), staged_file(final) as tmp:
        tmp.unlink()
        raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []


# --- staged_dir ---------------------------------------------------------------------------


def test_staged_dir_moves_files_in_on_success(tmp_path: Path) -> None:
    final = tmp_path / "live"
    with staged_dir(final) as stage:
        assert stage.parent == final.parent and stage.name.startswith(".live.")
        (stage / "filesystem.squashfs").write_bytes(b"hsqs")
        (stage / "vmlinuz").write_bytes(b"kernel")
        (stage / "vmlinuz").chmod(0o600)
    assert sorted(p.name for p in final.iterdir()) == ["filesystem.squashfs", "vmlinuz"]
    assert stat.S_IMODE((final / "vmlinuz").stat().st_mode) == 0o644


def test_staged_dir_publishes_a_link_to_the_file_already_there(tmp_path: Path) -> None:
    """--layered links the cached base squashfs in every time: rename(2)
    between two links to one file does nothing, yet the stage must go."""
    cached = tmp_path / "base.squashfs"
    cached.write_bytes(b"hsqs")
    final = tmp_path / "live"
    for _ in range(2):
        with staged_dir(final) as stage:
            os.link(cached, stage / "filesystem.squashfs")
    assert [p.name for p in final.iterdir()] == ["filesystem.squashfs"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_staged_dir_failure_removes_a_dir_it_created(tmp_path: Path) -> None:
    final = tmp_path / "new" / "live"
    final.parent.mkdir()
    with pytest.raises(BuildError, match="mksquashfs failed"), staged_dir(final) as stage:
        (stage / "filesystem.squashfs").write_bytes(b"half")
        raise BuildError("mksquashfs failed")
    assert not final.exists()
    assert list(final.parent.iterdir()) == []


def test_staged_dir_failure_keeps_an_existing_dir(tmp_path: Path) -> None:
    final = tmp_path / "live"
    final.mkdir()
    (final / "filesystem.squashfs").write_bytes(b"from the last build")
    with pytest.raises(KeyboardInterrupt), staged_dir(final) as stage:
        (stage / "filesystem.squashfs").write_bytes(b"half")
        raise KeyboardInterrupt
    assert [p.name for p in final.iterdir()] == ["filesystem.squashfs"]
    assert (final / "filesystem.squashfs").read_bytes() == b"from the last build"


def test_staged_dir_success_replaces_older_files(tmp_path: Path) -> None:
    final = tmp_path / "live"
    final.mkdir()
    (final / "filesystem.squashfs").write_bytes(b"old")
    with staged_dir(final) as stage:
        (stage / "filesystem.squashfs").write_bytes(b"new")
    assert (final / "filesystem.squashfs").read_bytes() == b"new"
    assert [p.name for p in final.iterdir()] == ["filesystem.squashfs"]




# --- the check runs before the rename --------------------------------------------------


def refuse(path: Path) -> None:
    raise BuildError(f"{path.name} failed its check")


def test_failed_check_keeps_the_previous_file_bit_for_bit(tmp_path: Path) -> None:
    final = tmp_path / "live.iso"
    final.write_bytes(b"the good ISO")
    with pytest.raises(BuildError, match="failed its check"), \
            staged_file(final, check=refuse) as tmp:
        tmp.write_bytes(b"a broken ISO")
    assert final.read_bytes() == b"the good ISO"
    assert [p.name for p in tmp_path.iterdir()] == ["live.iso"]


def test_check_sees_the_staged_file(tmp_path: Path) -> None:
    seen: list[bytes] = []
    final = tmp_path / "root.tar"
    with staged_file(final, check=lambda p: seen.append(p.read_bytes())) as tmp:
        tmp.write_bytes(b"tar")
    assert seen == [b"tar"] and final.read_bytes() == b"tar"


def test_failed_check_keeps_the_previous_directory(tmp_path: Path) -> None:
    final = tmp_path / "live"
    final.mkdir()
    (final / "filesystem.squashfs").write_bytes(b"old")
    (final / "notes.txt").write_text("the user's own file")
    with pytest.raises(BuildError), staged_dir(final, check=refuse) as stage:
        (stage / "filesystem.squashfs").write_bytes(b"new")
    assert (final / "filesystem.squashfs").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live"]


def test_staged_dir_keeps_files_it_did_not_write(tmp_path: Path) -> None:
    final = tmp_path / "live"
    final.mkdir()
    (final / "notes.txt").write_text("the user's own file")
    with staged_dir(final) as stage:
        (stage / "filesystem.squashfs").write_bytes(b"new")
    assert sorted(p.name for p in final.iterdir()) == ["filesystem.squashfs", "notes.txt"]


def test_keep_failed_renames_to_failed(tmp_path: Path) -> None:
    final = tmp_path / "disk.img"
    with pytest.raises(BuildError), staged_file(final, keep_failed=True) as tmp:
        tmp.write_bytes(b"half an image")
        raise BuildError("grub-install failed")
    assert not final.exists()
    assert (tmp_path / "disk.img.failed").read_bytes() == b"half an image"
    assert leftovers(tmp_path) == []


def test_a_staged_file_that_cannot_be_removed_keeps_the_builds_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The output's filesystem turned read-only: the build's own error is
    the one raised, and the log names what is left to remove."""
    final = tmp_path / "root.tar"

    def read_only(self: Path, missing_ok: bool = False) -> None:
        raise OSError(30, "Read-only file system")

    with pytest.raises(BuildError, match="tar failed"), staged_file(final) as tmp:
        monkeypatch.setattr(Path, "unlink", read_only)
        raise BuildError("tar failed")
    monkeypatch.undo()
    assert f"could not remove the staged {tmp}: Read-only file system" in caplog.text


def test_scratch_file_always_goes(tmp_path: Path) -> None:
    with scratch_file(tmp_path / "disk.img") as raw:
        raw.write_bytes(b"raw")
        assert raw.parent == tmp_path
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BuildError), scratch_file(tmp_path / "disk.img", keep_failed=True) as raw:
        raise BuildError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["disk.img.failed"]


def test_sighup_while_writing_leaves_nothing(tmp_path: Path) -> None:
    """A hang-up (its handler raises, as the command line's does) removes
    the staged file and never renames it."""
    got: list[int] = []

    def handler(signum: int, frame: object) -> None:
        got.append(signum)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGHUP, handler)
    try:
        final = tmp_path / "out.tar"
        with pytest.raises(KeyboardInterrupt), staged_file(final) as tmp:
            tmp.write_bytes(b"data")
            signal.raise_signal(signal.SIGHUP)
        assert got == [signal.SIGHUP]
        assert list(tmp_path.iterdir()) == []
    finally:
        signal.signal(signal.SIGHUP, old)
