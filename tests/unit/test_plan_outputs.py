"""plan.outputs: which output, its paths, --owner and --squash-compression."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan import Host
from vmdebootstrap.plan.findings import Findings
from vmdebootstrap.plan.outputs import (
    check_outputs,
    compression_problems,
    log_file_of,
    path_problems,
    targets_of,
    writable_parent_problems,
)


def outputs_of(host: Host, **values: Any) -> tuple[str, Findings]:
    found = Findings()
    return check_outputs(Settings(**values), host, found), found


@pytest.mark.parametrize("kind", ["image", "tarball", "squash", "iso"])
def test_one_output(host: Host, out: Path, kind: str) -> None:
    name = {"tarball": "r.tar"}.get(kind, kind)
    output, found = outputs_of(host, **{kind: str(out / name)})
    assert output == kind
    assert found.problems == [] and found.notes == []


def test_no_output(host: Host) -> None:
    output, found = outputs_of(host)
    assert output == "none"
    assert found.problems == ["no output given: use one of --image, --tarball, --squash "
                              "or --iso"]


def test_two_outputs(host: Host, out: Path) -> None:
    output, found = outputs_of(host, image=str(out / "d.img"), tarball=str(out / "r.tar"))
    assert output == "none"
    assert found.problems == ["only one output per run: --image and --tarball were given "
                              "together"]


def test_squash_beside_iso_is_not_a_second_output(host: Host, out: Path) -> None:
    output, found = outputs_of(host, iso=str(out / "l.iso"), squash=str(out / "live"))
    assert output == "iso" and found.problems == []


def test_owner(host: Host, out: Path) -> None:
    assert outputs_of(host, tarball=str(out / "r.tar"), owner="builder")[1].problems == []
    _, found = outputs_of(host, tarball=str(out / "r.tar"), owner="nobody-here")
    assert found.problems == ["--owner: no user 'nobody-here' on this host"]


def test_empty_path_is_the_only_problem(out: Path) -> None:
    assert path_problems("tarball", "  ") == ["--tarball: empty path"]


def test_missing_directory(tmp_path: Path) -> None:
    assert path_problems("log", str(tmp_path / "no" / "x.log")) == [
        f"--log: directory {tmp_path / 'no'} does not exist; create it first"]


def test_squash_parents_are_created(tmp_path: Path) -> None:
    assert writable_parent_problems("squash", str(tmp_path / "a" / "b" / "live")) == []


def test_unwritable_directory(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == out
                        else real_access(path, mode))
    assert writable_parent_problems("iso", str(out / "l.iso")) == [
        f"--iso: directory {out} is not writable"]


def test_tarball_of_any_name(out: Path) -> None:
    """A name with no compressing suffix is a plain tar, as with 1.x's tar -a."""
    assert path_problems("tarball", str(out / "r.tar.zst")) == []
    assert path_problems("tarball", str(out / "r.zip")) == []
    assert path_problems("tarball", str(out / "root")) == []


def test_image_keeps_its_wording(out: Path) -> None:
    """Not OutputKind's 'is a directory: give a file name'."""
    assert path_problems("image", str(out)) == [
        f"--image: {out} exists and is not a regular file; "
        "vmdebootstrap only writes image files"]


def test_squash_checked_by_its_kind(out: Path) -> None:
    (out / "f").write_text("")
    assert path_problems("squash", str(out / "f")) == [
        f"--squash: {out / 'f'} exists and is not a directory"]
    assert path_problems("squash", str(out)) == []


@pytest.mark.parametrize("kind", ["tarball", "iso"])
def test_file_outputs_checked_by_their_kind(out: Path, kind: str) -> None:
    target = out / "x.tar"
    target.mkdir()
    assert f"--{kind}: {target} is a directory: give a file name" in path_problems(
        kind, str(target))


def test_log_is_no_output_kind(out: Path) -> None:
    assert path_problems("log", str(out)) == []  # a directory: only its parent is checked


@pytest.mark.parametrize("value", ["xz", "lz4", "lzma", "gzip:1", "lzo:9", "zstd:22"])
def test_compression_accepted(value: str) -> None:
    assert compression_problems(value) == []


@pytest.mark.parametrize(("value", "expected"), [
    ("bzip2", "use one of xz, zstd, gzip, lz4, lzo, lzma, optionally with :LEVEL"),
    ("xz:9", "xz takes no level (levels: gzip 1-9, lzo 1-9, zstd 1-22)"),
    ("zstd:23", "the zstd level must be a number from 1 to 22"),
    ("gzip:", "the gzip level must be a number from 1 to 9"),
])
def test_compression_refused(value: str, expected: str) -> None:
    assert compression_problems(value) == [f"--squash-compression: {value!r}: {expected}"]


def test_targets_of_an_iso_with_its_squash_and_list() -> None:
    s = Settings(iso="out/l.iso", squash="out/live", pkglist=True, owner="builder",
                 squash_compression="zstd:3", keep_on_failure=True)
    t = targets_of(s, "iso")
    assert (t.kind, t.path, t.squash_dir) == ("iso", Path("out/l.iso"), Path("out/live"))
    assert t.pkglist == Path("out/l.iso.packages")
    assert (t.owner, t.compression, t.keep_on_failure) == ("builder", "zstd:3", True)
    assert t.paths == [Path("out/l.iso"), Path("out/live"), Path("out/l.iso.packages")]


def test_a_squash_directory_has_its_own_list() -> None:
    t = targets_of(Settings(squash="live", pkglist=True), "squash")
    assert t.pkglist is None and t.squash_dir is None


def test_log_file_of() -> None:
    assert log_file_of(Settings(log="b.log")) == Path("b.log")
    assert log_file_of(Settings(log="none")) is None
    assert log_file_of(Settings()) is None
