"""vmdebootstrap verify without a rebuild: finding the manifest and the
inputs, refusing a mirror that moved, comparing outputs."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from vmdebootstrap import verify
from vmdebootstrap.cli import main
from vmdebootstrap.errors import UsageError
from vmdebootstrap.outputs import compare, manifest

RELEASE = b"Origin: Debian\nSuite: stable\nDate: Sat, 01 Nov 2025 10:00:00 UTC\n"
MOVED = b"Origin: Debian\nSuite: stable\nDate: Sun, 02 Nov 2025 04:00:00 UTC\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def doc(**extra: object) -> dict[str, object]:
    return {"format": 1, "vmdebootstrap": "2.0.0", "output": "iso",
            "settings": {"distribution": "trixie", "arch": "amd64",
                         "package": ["less"], "hostname": "live"},
            "inputs": {}, "passwords": {"users": [{"name": "user", "password_hash": "$y$x"}],
                                        "root_password_hash": None},
            "mirror": {"url": "http://mirror.invalid/debian/", "suite": "trixie",
                       "release_sha256": sha(RELEASE), "date": "Sat, 01 Nov 2025 10:00:00 UTC"},
            "source_date_epoch": 1761991200, **extra}


def test_manifest_beside_an_output(tmp_path: Path) -> None:
    iso = tmp_path / "live.iso"
    iso.write_bytes(b"not really an ISO")
    (tmp_path / "live.iso.manifest.json").write_text(json.dumps(doc()))
    assert verify.load_manifest(iso)["output"] == "iso"


def test_manifest_in_a_squash_directory_and_in_a_tarball(tmp_path: Path) -> None:
    squash = tmp_path / "live"
    squash.mkdir()
    (squash / manifest.NAME).write_text(json.dumps(doc(output="squash")))
    assert verify.load_manifest(squash)["output"] == "squash"

    tarball = tmp_path / "root.tar"
    data = json.dumps(doc(output="tarball")).encode()
    with tarfile.open(tarball, "w") as tar:
        info = tarfile.TarInfo(f"./{manifest.IN_ROOT}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert verify.load_manifest(tarball)["output"] == "tarball"


def test_no_manifest_is_a_clear_error(tmp_path: Path) -> None:
    other = tmp_path / "passwd"
    other.write_text("root:x:0:0::/root:/bin/sh\n")
    with pytest.raises(UsageError, match="no vmdebootstrap manifest beside it or inside it"):
        verify.load_manifest(other)
    (tmp_path / "passwd.manifest.json").write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        verify.load_manifest(other)


def test_inputs_found_by_their_hash_anywhere_else_by_name(tmp_path: Path) -> None:
    hooks, moved = tmp_path / "hooks", tmp_path / "moved"
    hooks.mkdir()
    moved.mkdir()
    (moved / "renamed.sh").write_bytes(b"#!/bin/sh\ntrue\n")
    (hooks / "hook.sh").write_bytes(b"#!/bin/sh\nfalse\n")
    recipe = doc(inputs={"customize": [{"name": "hook.sh", "sha256": sha(b"#!/bin/sh\ntrue\n")}]})
    output = tmp_path / "out" / "live.iso"
    output.parent.mkdir()
    found = verify.find_inputs(recipe, output, [hooks, moved])
    assert found["customize"] == [verify.Found(moved / "renamed.sh", True)]
    # Only a file of that name, with other bytes: used, and marked as not matching.
    found = verify.find_inputs(recipe, output, [hooks])
    assert found["customize"] == [verify.Found(hooks / "hook.sh", False)]
    with pytest.raises(UsageError, match=r"--customize: hook.sh \(sha256 [0-9a-f]{64}\) is not"):
        verify.find_inputs(recipe, output, [tmp_path / "out"])


def test_a_mirror_that_moved_on_is_refused_with_the_state_needed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify, "fetch_release", lambda url, suite: RELEASE)
    assert verify.check_mirror(doc(), None) == "http://mirror.invalid/debian/"
    monkeypatch.setattr(verify, "fetch_release", lambda url, suite: MOVED)
    with pytest.raises(UsageError) as info:
        verify.check_mirror(doc(), None)
    message = str(info.value)
    assert "has moved on" in message and "Sun, 02 Nov 2025 04:00:00 UTC" in message
    assert "the state of Sat, 01 Nov 2025 10:00:00 UTC" in message and "--mirror" in message
    seen = []
    monkeypatch.setattr(verify, "fetch_release", lambda url, suite: seen.append(url) or RELEASE)
    assert verify.check_mirror(doc(), "http://snapshot.invalid/archive/x/") == \
        "http://snapshot.invalid/archive/x/"
    assert seen == ["http://snapshot.invalid/archive/x/"]


def test_settings_layer_replays_the_recipe(tmp_path: Path) -> None:
    args = argparse.Namespace(no_cache=False, cache_dir=None, verbose=False)
    hook = verify.Found(tmp_path / "hook.sh", True)
    layer = verify.settings_layer(doc(), {"customize": [hook]}, "iso", tmp_path / "x.iso",
                                  "http://mirror.invalid/debian/", args)
    assert layer["package"] == ("less",) and layer["customize"] == str(hook.path)
    assert layer["iso"] == str(tmp_path / "x.iso")
    assert layer["user"] == (f"user/{verify.PLACEHOLDER}",)
    assert "root-password" not in layer
    with pytest.raises(UsageError, match="does not know"):
        verify.settings_layer(doc(settings={"from-the-future": True}), {}, "iso",
                              tmp_path / "x.iso", "u", args)


def test_not_reproducible_is_refused(tmp_path: Path) -> None:
    iso = tmp_path / "live.iso"
    iso.write_bytes(b"x")
    (tmp_path / "live.iso.manifest.json").write_text(json.dumps(doc(source_date_epoch=None)))
    args = verify.parse_args([str(iso), "--work-dir", str(tmp_path / "work")])
    with pytest.raises(UsageError, match="was not built reproducibly"):
        verify.rebuild(verify.load_manifest(iso), args, tmp_path / "work")


def test_compare(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "vmlinuz").write_bytes(b"kernel")
    (a / "filesystem.squashfs").write_bytes(b"one")
    (b / "filesystem.squashfs").write_bytes(b"two")
    (b / "extra").write_bytes(b"")
    assert compare.compare(a, b) == ["extra: only in the rebuild",
                                    "filesystem.squashfs: the bytes differ"]
    assert compare.compare(a / "vmlinuz", b / "vmlinuz") == []
    assert compare.compare(a / "filesystem.squashfs", b / "filesystem.squashfs")[0].startswith(
        "filesystem.squashfs: sha256 ")


def test_changed_packages() -> None:
    old = doc(packages=[{"name": "less", "architecture": "amd64", "version": "590-2"}])
    new = doc(packages=[{"name": "less", "architecture": "amd64", "version": "590-3"},
                        {"name": "nano", "architecture": "amd64", "version": "7.2-1"}])
    assert compare.changed_packages(old, new) == ["package less:amd64: 590-2 -> 590-3",
                                                 "package nano:amd64: (none) -> 7.2-1"]


def test_subcommand(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["verify", str(tmp_path / "missing.iso")]) == 2
    assert "vmdebootstrap: error: " in capsys.readouterr().err


def test_disk_images_are_refused_before_a_rebuild(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(b"x")
    (tmp_path / "disk.img.manifest.json").write_text(json.dumps(doc(output="image")))
    args = verify.parse_args([str(image)])
    with pytest.raises(UsageError, match="disk images are not bit-reproducible yet"):
        verify.rebuild(verify.load_manifest(image), args, tmp_path / "work")
