"""plan.iso: the ISO's architectures, volume id, splash, installer, host tools."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.conftest import MIRROR
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.outputs import iso as iso_output
from vmdebootstrap.plan import ISO_ARCHES, iso_spec_of
from vmdebootstrap.plan.findings import Findings
from vmdebootstrap.plan.iso import check_iso, iso_of, option_problems, spec_problems
from vmdebootstrap.plan.target import Target

AMD64 = Target(arch="amd64", codename="trixie", native=True)


@pytest.fixture
def nothing_missing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The host tools the ISO needs are 'installed' unless listed here."""
    missing: list[str] = []
    monkeypatch.setattr(iso_output, "missing_requirements", lambda spec: list(missing))
    return missing


def iso_problems(s: Settings, output: str = "iso", target: Target = AMD64,
                 notes: tuple[str, ...] = ()) -> list[str]:
    found = Findings()
    check_iso(s, target, MIRROR, output, found)
    assert found.notes == list(notes)
    return found.problems


def test_a_plain_iso(nothing_missing: list[str]) -> None:
    assert iso_problems(Settings(iso="l.iso")) == []


@pytest.mark.parametrize("arch", ISO_ARCHES)
def test_iso_arches(nothing_missing: list[str], arch: str) -> None:
    settings = Settings(secure_boot=False)
    assert iso_problems(settings, target=Target(arch, "trixie", True)) == []


def test_secure_boot_where_debian_signs_the_loaders(nothing_missing: list[str]) -> None:
    assert iso_spec_of(Settings(), "amd64", "trixie", MIRROR).secure_boot
    assert not iso_spec_of(Settings(secure_boot=False), "amd64", "trixie", MIRROR).secure_boot
    assert iso_spec_of(Settings(), "arm64", "trixie", MIRROR).secure_boot
    assert not iso_spec_of(Settings(), "i386", "trixie", MIRROR).secure_boot
    assert iso_problems(Settings(), target=Target("i386", "trixie", True), notes=(
        "--iso for i386: no Secure Boot (vmdebootstrap uses Debian's signed boot "
        "loaders for amd64, arm64 only); the ISO boots without it",)) == []
    for arch in ("i386", "arm64"):
        assert iso_problems(Settings(secure_boot=False),
                            target=Target(arch, "trixie", True)) == []


def test_secure_boot_fetches_as_the_bootstrap_did() -> None:
    spec = iso_spec_of(Settings(), "amd64", "trixie", MIRROR, components=("main", "contrib"),
                       keyring="/k/archive.gpg", check_signatures=False)
    assert (spec.mirror, spec.distribution, spec.components) == (
        MIRROR, "trixie", ("main", "contrib"))
    assert (spec.keyring, spec.check_signatures) == (Path("/k/archive.gpg"), False)
    plain = iso_spec_of(Settings(), "amd64", "trixie", MIRROR)
    assert (plain.components, plain.keyring, plain.check_signatures) == (("main",), None, True)


def test_unsupported_arch_said_once(nothing_missing: list[str]) -> None:
    assert iso_problems(Settings(), target=Target("s390x", "trixie", False)) == [
        "--iso: not supported for s390x (supported: amd64, i386, arm64)"]


@pytest.mark.parametrize("option", ["installer", "splash", "preseed"])
def test_iso_only_options(option: str) -> None:
    s = Settings().with_values(**{option: True if option == "installer" else "x"})
    assert iso_problems(s, "squash") == [f"--{option} only applies to --iso"]


def test_option_problems(tmp_path: Path) -> None:
    s = Settings(iso_volume_id="debian live", splash=str(tmp_path / "s.png"),
                 preseed=str(tmp_path / "p.cfg"))
    assert option_problems(s, "amd64") == [
        "--iso-volume-id: 'debian live': use 1 to 32 of A-Z, 0-9, _",
        f"--splash: {tmp_path / 's.png'} does not exist",
        f"--preseed: {tmp_path / 'p.cfg'} does not exist",
        "--preseed requires --installer",
    ]


def test_spec_problems_skip_what_option_problems_said(tmp_path: Path) -> None:
    s = Settings(iso_volume_id="bad id", splash=str(tmp_path / "s.png"),
                 preseed=str(tmp_path / "p.cfg"), iso_menu_title="a\nb")
    problems = spec_problems(iso_spec_of(s, "amd64", "trixie", MIRROR))
    assert len(problems) == 1 and problems[0].startswith("--iso: menu title 'a\\nb' must")


def test_spec_problems_keep_the_rest(tmp_path: Path) -> None:
    s = Settings(kernel_append="volume'id", installer=True)
    spec = iso_spec_of(s, "amd64", "trixie", "")  # no mirror for the installer
    param, mirror, signed = spec_problems(spec)
    assert param.startswith("--iso: kernel parameter \"volume'id\" must be one word")
    assert mirror == "--iso: the installer entries need a mirror to fetch the installer from"
    assert signed == "--iso: Secure Boot needs a mirror to fetch the signed boot loaders from"


def test_splash_must_be_a_png(nothing_missing: list[str], tmp_path: Path) -> None:
    splash = tmp_path / "s.png"
    splash.write_text("not a png")
    assert iso_problems(Settings(splash=str(splash))) == [
        f"--splash: {splash} is not a PNG image (it does not start with PNG's signature); "
        "the boot menus show only PNG: convert it, e.g. with 'convert IMAGE splash.png'"]
    splash.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(8))
    assert iso_problems(Settings(splash=str(splash))) == []


def test_missing_host_tools(nothing_missing: list[str]) -> None:
    nothing_missing += ["xorriso (xorriso)", "mcopy (mtools)"]
    assert iso_problems(Settings()) == ["--iso needs xorriso (xorriso) installed",
                                        "--iso needs mcopy (mtools) installed"]
    assert iso_problems(Settings(dry_run=True)) == []


def test_spec_checks_need_a_distribution(nothing_missing: list[str]) -> None:
    nothing_missing.append("xorriso (xorriso)")
    assert iso_problems(Settings(), target=Target("amd64", "", True)) == []


def test_iso_spec_of() -> None:
    s = Settings(iso_volume_id="LIVE", iso_menu_title="Live", kernel_append="quiet splash",
                 serial_console=True, splash="s.png", installer=True, preseed="p.cfg")
    spec = iso_spec_of(s, "arm64", "trixie", MIRROR, epoch=7)
    assert (spec.arch, spec.distribution, spec.volume_id, spec.menu_title) == (
        "arm64", "trixie", "LIVE", "Live")
    assert spec.kernel_append == ("quiet", "splash")
    assert (spec.splash, spec.preseed) == (Path("s.png"), Path("p.cfg"))
    assert spec.installer and spec.serial_console and spec.serial_tty == "ttyAMA0"
    assert (spec.mirror, spec.source_date_epoch) == (MIRROR, 7)


def test_iso_of() -> None:
    assert iso_of(Settings(), AMD64, MIRROR, "tarball") is None
    assert iso_of(Settings(), AMD64, MIRROR, "iso") == iso_spec_of(Settings(), "amd64",
                                                                   "trixie", MIRROR)
