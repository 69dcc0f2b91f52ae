"""The build manifest: what it records, what it never records, its bytes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from vmdebootstrap.host.apt_sources import is_snapshot_url, source_options
from vmdebootstrap.host.digest import Digests
from vmdebootstrap.intent.plan import Plan
from vmdebootstrap.outputs import manifest
from vmdebootstrap.root.inventory import InstalledPackage

PlanOf = Callable[..., Plan]
RELEASE = (b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\n"
           b"Suite: stable\nCodename: trixie\nDate: Sat, 01 Nov 2025 10:00:00 UTC\n"
           b"Valid-Until: Sat, 08 Nov 2025 10:00:00 UTC\n")
PACKAGES = [InstalledPackage("less", "590-2", "amd64", "less", "590-2", None, None, None),
            InstalledPackage("base-files", "13.8", "amd64", "base-files", "13.8",
                             "pool/main/b/base-files/base-files_13.8_amd64.deb", "ab" * 32,
                             "GPL-2.0-or-later")]


def recipe(plan: Plan) -> dict[str, object]:
    return manifest.recipe(plan, release=RELEASE, tool_version="mmdebstrap 1.5.7",
                           packages=PACKAGES)


def test_recipe_records_what_shaped_the_output(plan_of: PlanOf, tmp_path: Path) -> None:
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\ntrue\n")
    hook.chmod(0o755)
    plan = plan_of("--squash", str(tmp_path / "out"), "--customize", str(hook),
                   "--package", "less", "--log", str(tmp_path / "log"), "--verbose",
                   "--pkglist")
    doc = recipe(plan)
    settings = doc["settings"]
    assert isinstance(settings, dict)
    assert settings["distribution"] == plan.distribution == "trixie"
    assert settings["arch"] == plan.arch and settings["mirror"] == plan.mirror
    assert settings["package"] == ["less"]
    for run_only in ("log", "verbose", "pkglist", "squash", "customize", "cache-dir"):
        assert run_only not in settings
    assert doc["inputs"] == {"customize": [
        {"name": "hook.sh", "sha256": hashlib.sha256(hook.read_bytes()).hexdigest()}]}
    assert str(tmp_path) not in manifest.dumps(doc), "no build path in the bytes"
    assert [p["name"] for p in doc["packages"]] == ["base-files", "less"]  # type: ignore[index]
    mirror = doc["mirror"]
    assert isinstance(mirror, dict)
    assert mirror["release_file"] == "InRelease" and mirror["date_epoch"] == 1761991200
    assert mirror["release_sha256"] == hashlib.sha256(RELEASE).hexdigest()
    assert mirror["snapshot"] is False


def test_passwords_only_as_hashes(plan_of: PlanOf, tmp_path: Path) -> None:
    plan = plan_of("--squash", str(tmp_path / "out"), "--user", "alice/Wonder-Land-42",
                   "--root-password", "Root-Secret-77", "--user", "bob/")
    text = manifest.dumps(recipe(plan))
    assert "Wonder-Land-42" not in text and "Root-Secret-77" not in text
    users = json.loads(text)["passwords"]["users"]
    assert users[0]["name"] == "alice" and users[0]["password_hash"].startswith("$")
    assert users[1] == {"name": "bob", "password_hash": None}
    assert json.loads(text)["passwords"]["root_password_hash"].startswith("$")


def test_same_build_same_bytes(plan_of: PlanOf, tmp_path: Path) -> None:
    plan = plan_of("--tarball", str(tmp_path / "r.tar"))
    assert manifest.dumps(recipe(plan)) == manifest.dumps(recipe(plan))


def test_files_and_beside(plan_of: PlanOf, tmp_path: Path) -> None:
    plan = plan_of("--iso", str(tmp_path / "live.iso"))
    live = tmp_path / "live"
    live.mkdir()
    (live / "filesystem.squashfs").write_bytes(b"squash")
    (live / "vmlinuz").write_bytes(b"kernel")
    doc = manifest.with_files(recipe(plan), live,
                              ("filesystem.squashfs", "vmlinuz", "initrd.img"), Digests())
    assert doc["files"] == {"filesystem.squashfs": hashlib.sha256(b"squash").hexdigest(),
                            "vmlinuz": hashlib.sha256(b"kernel").hexdigest()}
    iso = tmp_path / "live.iso"
    iso.write_bytes(b"iso")
    out = manifest.beside(doc, plan, iso, Digests())
    assert out["output_file"] == {"name": "live.iso", "size": 3,
                                  "sha256": hashlib.sha256(b"iso").hexdigest()}
    assert manifest.beside_path(iso) == tmp_path / "live.iso.manifest.json"


def test_snapshot_urls() -> None:
    assert is_snapshot_url("http://snapshot.invalid/archive/debian/20250102T030405Z/")
    assert is_snapshot_url("http://snapshot.invalid/archive/debian/20250102T030405Z")
    assert not is_snapshot_url("http://mirror.invalid/debian/")
    assert source_options() == ""
    assert source_options(snapshot=True) == "[check-valid-until=no] "
    assert source_options(check_signatures=False, snapshot=True) == \
        "[trusted=yes check-valid-until=no] "


def test_snapshot_turns_off_valid_until_only(plan_of: PlanOf, tmp_path: Path) -> None:
    from vmdebootstrap.root.bootstrap import mmdebstrap_argv
    from vmdebootstrap.root.hookapt import build_source_line

    plain = plan_of("--iso", str(tmp_path / "live.iso"))
    given = plan_of("--iso", str(tmp_path / "live.iso"), "--snapshot")
    found = plan_of("--iso", str(tmp_path / "live.iso"), "--mirror",
                    "http://snapshot.invalid/archive/debian/20261201T000000Z/")
    assert not plain.snapshot and given.snapshot and found.snapshot
    assert given.iso is not None and given.iso.snapshot
    valid_until = "--aptopt=Acquire::Check-Valid-Until false"
    assert valid_until in mmdebstrap_argv(given, tmp_path)
    assert valid_until not in mmdebstrap_argv(plain, tmp_path)
    assert "[check-valid-until=no] " in build_source_line(found)
    assert "[" not in build_source_line(plain)
    mirror = recipe(given)["mirror"]
    assert isinstance(mirror, dict) and mirror["snapshot"] is True
    assert recipe(given)["settings"]["snapshot"] is True  # type: ignore[index]


def test_settings_of_other_outputs_are_left_out(plan_of: PlanOf, tmp_path: Path) -> None:
    iso = recipe(plan_of("--iso", str(tmp_path / "live.iso")))["settings"]
    image = recipe(plan_of("--image", str(tmp_path / "disk.img")))["settings"]
    assert isinstance(iso, dict) and isinstance(image, dict)
    assert "size" not in iso and "roottype" not in iso and "iso-volume-id" in iso
    assert image["size"] == "1000000000" and "iso-volume-id" not in image
