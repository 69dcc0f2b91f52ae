from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from tests.unit.conftest import RELEASES_CSV
from vmdebootstrap.errors import UsageError, VmdebootstrapError
from vmdebootstrap.host import distro
from vmdebootstrap.host.distro import (
    Release,
    default_distribution,
    is_older_than,
    load_releases,
    resolve,
)

# Same shape as distro-info-data's debian.csv (tail of it).
CSV = RELEASES_CSV


@pytest.fixture
def csv_path(tmp_path: Path) -> Path:
    path = tmp_path / "debian.csv"
    path.write_text(CSV)
    return path


@pytest.fixture
def releases(csv_path: Path) -> list[Release]:
    return load_releases(csv_path)


def test_load_releases_parses_rows(releases: list[Release]) -> None:
    assert [r.series for r in releases][:2] == ["wheezy", "jessie"]
    trixie = next(r for r in releases if r.series == "trixie")
    assert trixie == Release("trixie", "13", date(2023, 6, 10), date(2025, 8, 9),
                             date(2028, 8, 9))
    sid = next(r for r in releases if r.series == "sid")
    assert sid.version is None and sid.release is None and sid.eol is None


def test_load_releases_missing_file_names_package(tmp_path: Path) -> None:
    with pytest.raises(VmdebootstrapError, match="distro-info-data"):
        load_releases(tmp_path / "nope.csv")


def test_load_releases_bad_date(tmp_path: Path) -> None:
    path = tmp_path / "debian.csv"
    path.write_text("version,codename,series,created,release,eol\n1,X,x,2020-13-01,,\n")
    with pytest.raises(VmdebootstrapError, match="line 2"):
        load_releases(path)


def test_load_releases_skips_blank_series(tmp_path: Path) -> None:
    path = tmp_path / "debian.csv"
    path.write_text("version,codename,series,created,release,eol\n1,X,,,,\n2,Y,y,,,\n")
    assert [r.series for r in load_releases(path)] == ["y"]


@pytest.mark.parametrize("name", ["wheezy", "Bookworm", " TRIXIE ", "forky", "duke", "sid",
                                  "experimental"])
def test_resolve_codenames(name: str, releases: list[Release]) -> None:
    assert resolve(name, date(2026, 1, 1), releases) == name.strip().lower()


@pytest.mark.parametrize(("today", "alias", "expected"), [
    (date(2026, 1, 1), "stable", "trixie"),
    (date(2026, 1, 1), "oldstable", "bookworm"),
    (date(2026, 1, 1), "oldoldstable", "bullseye"),
    (date(2026, 1, 1), "testing", "forky"),
    (date(2026, 1, 1), "unstable", "sid"),
    (date(2026, 1, 1), "Stable", "trixie"),
    # The day before trixie's release, and the release day itself.
    (date(2025, 8, 8), "stable", "bookworm"),
    (date(2025, 8, 8), "testing", "trixie"),
    (date(2025, 8, 9), "stable", "trixie"),
    (date(2025, 8, 9), "testing", "forky"),
    (date(2024, 1, 1), "oldoldstable", "buster"),
])
def test_resolve_aliases(today: date, alias: str, expected: str,
                         releases: list[Release]) -> None:
    assert resolve(alias, today, releases) == expected


def test_resolve_unknown_names_option_and_lists_valid(releases: list[Release]) -> None:
    with pytest.raises(UsageError) as info:
        resolve("potato-salad", date(2026, 1, 1), releases)
    message = str(info.value)
    assert "--distribution" in message
    assert "'potato-salad'" in message
    for name in ("stable", "testing", "unstable", "wheezy", "trixie", "sid", "experimental"):
        assert name in message


def test_resolve_stable_before_any_release(releases: list[Release]) -> None:
    with pytest.raises(UsageError, match="--distribution 'stable'"):
        resolve("stable", date(2010, 1, 1), releases)


def test_resolve_oldoldstable_needs_three_releases() -> None:
    two = [Release("a", "1", date(2000, 1, 1), date(2001, 1, 1), None),
           Release("b", "2", date(2001, 1, 1), date(2002, 1, 1), None)]
    assert resolve("oldstable", date(2003, 1, 1), two) == "a"
    with pytest.raises(UsageError, match="--distribution 'oldoldstable'"):
        resolve("oldoldstable", date(2003, 1, 1), two)


def test_resolve_testing_not_yet_created() -> None:
    # The next series is announced but its development has not started.
    rels = [Release("a", "1", date(2000, 1, 1), date(2001, 1, 1), None),
            Release("b", "2", date(2005, 1, 1), None, None)]
    with pytest.raises(UsageError, match="--distribution 'testing'"):
        resolve("testing", date(2003, 1, 1), rels)


def test_resolve_testing_when_nothing_follows_stable() -> None:
    rels = [Release("a", "1", date(2000, 1, 1), date(2001, 1, 1), None),
            Release("sid", None, date(1993, 1, 1), None, None)]
    with pytest.raises(UsageError, match="--distribution 'testing'"):
        resolve("testing", date(2003, 1, 1), rels)


def test_resolve_testing_before_any_release() -> None:
    rels = [Release("a", "1", date(2000, 1, 1), date(2001, 1, 1), None)]
    assert resolve("testing", date(2000, 6, 1), rels) == "a"


def test_resolve_rolling_names_without_csv_rows() -> None:
    rels = [Release("a", "1", date(2000, 1, 1), date(2001, 1, 1), None)]
    assert resolve("unstable", date(2003, 1, 1), rels) == "sid"
    assert resolve("experimental", date(2003, 1, 1), rels) == "experimental"


def test_resolve_defaults_read_host_csv(monkeypatch: pytest.MonkeyPatch,
                                        releases: list[Release]) -> None:
    monkeypatch.setattr(distro, "load_releases", lambda: releases)
    assert resolve("bookworm") == "bookworm"
    assert resolve("stable") in {r.series for r in releases}


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("wheezy", "jessie", True),
    ("jessie", "wheezy", False),
    ("wheezy", "wheezy", False),
    ("Trixie", "forky", True),
    ("duke", "sid", True),
    ("sid", "experimental", True),
    ("experimental", "sid", False),
    ("sid", "wheezy", False),
])
def test_is_older_than(a: str, b: str, expected: bool, releases: list[Release]) -> None:
    assert is_older_than(a, b, releases) is expected


def test_is_older_than_sid_newest_even_if_listed_first() -> None:
    rels = [Release("sid", None, None, None, None),
            Release("a", "1", date(2000, 1, 1), date(2001, 1, 1), None)]
    assert is_older_than("a", "sid", rels)


def test_is_older_than_unknown(releases: list[Release]) -> None:
    with pytest.raises(UsageError, match="--distribution 'stable'"):
        is_older_than("stable", "wheezy", releases)


def test_is_older_than_reads_host_csv(monkeypatch: pytest.MonkeyPatch,
                                      releases: list[Release]) -> None:
    monkeypatch.setattr(distro, "load_releases", lambda: releases)
    assert is_older_than("wheezy", "sid")


def test_default_distribution(releases: list[Release]) -> None:
    assert default_distribution(date(2026, 1, 1), releases) == "trixie"
    assert default_distribution(date(2024, 1, 1), releases) == "bookworm"


def test_real_csv_if_present() -> None:
    if not distro.DEFAULT_CSV.exists():
        pytest.skip("distro-info-data not installed")
    assert resolve("wheezy", date(2026, 1, 1)) == "wheezy"
    assert is_older_than("wheezy", default_distribution(date(2026, 1, 1)))
