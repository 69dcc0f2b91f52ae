"""plan.mirrors: the mirror, --apt-mirror, and signature checking."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.unit.conftest import MIRROR
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan import Host
from vmdebootstrap.plan.findings import Findings
from vmdebootstrap.plan.mirrors import check_mirrors, check_signatures, url_problems


def test_mirror_from_the_host(host: Host) -> None:
    found = Findings()
    assert check_mirrors(Settings(), host, found) == MIRROR + "/"
    assert found == Findings()


def test_mirror_option_wins_without_reading_the_host(host: Host, tmp_path: Path) -> None:
    nowhere = dataclasses.replace(host, etc_apt=tmp_path / "no-such-dir")
    found = Findings()
    assert check_mirrors(Settings(mirror="http://m.example/d"), nowhere, found) == \
        "http://m.example/d"
    assert found == Findings()


def test_no_mirror_anywhere(host: Host, tmp_path: Path) -> None:
    empty = tmp_path / "empty-apt"
    empty.mkdir()
    found = Findings()
    assert check_mirrors(Settings(), dataclasses.replace(host, etc_apt=empty), found) == ""
    assert len(found.problems) == 1 and "no Debian mirror" in found.problems[0]


def test_apt_mirror_requires_configure_apt(host: Host) -> None:
    found = Findings()
    check_mirrors(Settings(apt_mirror=MIRROR), host, found)
    assert found.problems == ["--apt-mirror requires --configure-apt"]
    found = Findings()
    check_mirrors(Settings(apt_mirror=MIRROR, configure_apt=True), host, found)
    assert found.problems == []


@pytest.mark.parametrize("url", ["http://m.example/d", "https://m.example/", "file:///srv/d"])
def test_good_urls(url: str) -> None:
    assert url_problems(Settings(mirror=url, apt_mirror=url)) == []


def test_bad_urls_name_their_option() -> None:
    assert url_problems(Settings(mirror="ftp://m.example/d", apt_mirror="m.example")) == [
        "--mirror: 'ftp://m.example/d' is not an http://, https:// or file:// URL",
        "--apt-mirror: 'm.example' is not an http://, https:// or file:// URL",
    ]


def test_signatures_checked_by_default() -> None:
    found = Findings()
    assert check_signatures(Settings(), {}, found) is True
    assert found == Findings()


@pytest.mark.parametrize(("settings", "opts"), [
    (Settings(no_check_gpg=True), {}),
    (Settings(), {"no-check-gpg": None}),
])
def test_unchecked_signatures_warn(settings: Settings, opts: dict[str, str | None]) -> None:
    found = Findings()
    assert check_signatures(settings, opts, found) is False
    assert found.notes == ["WARNING: the mirror's Release signature will NOT be verified"]
    assert found.problems == []
