"""Debian release names, read from distro-info-data.

The suite aliases (stable, testing, ...) move over time, so they are worked
out from the release dates in the csv and a given "today" rather than from a
table in this file that would go stale.
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from vmdebootstrap.errors import UsageError, VmdebootstrapError

DEFAULT_CSV = Path("/usr/share/distro-info/debian.csv")

# These never get a release date; they are always the newest suites.
ROLLING = ("sid", "experimental")
ALIASES = ("stable", "oldstable", "oldoldstable", "testing", "unstable")


@dataclass(frozen=True)
class Release:
    series: str
    version: str | None
    created: date | None
    release: date | None
    eol: date | None


def _date(text: str | None) -> date | None:
    text = (text or "").strip()
    return date.fromisoformat(text) if text else None


def parse_releases(text: str, origin: str = "<csv>") -> list[Release]:
    """Parse the contents of a distro-info-data csv, keeping file order."""
    releases: list[Release] = []
    for lineno, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        series = (row.get("series") or "").strip().lower()
        if not series:
            continue
        try:
            releases.append(Release(
                series=series,
                version=(row.get("version") or "").strip() or None,
                created=_date(row.get("created")),
                release=_date(row.get("release")),
                eol=_date(row.get("eol")),
            ))
        except ValueError as exc:
            raise VmdebootstrapError(f"{origin}, line {lineno}: bad date: {exc}") from exc
    return releases


def load_releases(path: Path = DEFAULT_CSV) -> list[Release]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise VmdebootstrapError(
            f"cannot read the list of Debian releases {path}: {exc.strerror or exc}; "
            "install the Debian package distro-info-data"
        ) from exc
    return parse_releases(text, str(path))


def _ordered(releases: Sequence[Release]) -> list[Release]:
    """csv order, but with sid and experimental moved to the end (newest)."""
    fixed = [r for r in releases if r.series not in ROLLING]
    rolling = sorted((r for r in releases if r.series in ROLLING),
                     key=lambda r: ROLLING.index(r.series))
    return fixed + rolling


def _released(releases: Sequence[Release], today: date) -> list[Release]:
    return [r for r in _ordered(releases)
            if r.series not in ROLLING and r.release is not None and r.release <= today]


def _bad_name(name: str, releases: Sequence[Release], why: str | None = None) -> UsageError:
    series = [r.series for r in _ordered(releases)]
    names = [*ALIASES, *series, *(r for r in ROLLING if r not in series)]
    reason = why or "is not a Debian release name or suite"
    # A misspelt name gets the one it was probably meant to be, not all 27.
    close = None if why else difflib.get_close_matches(name.strip().lower(), names, n=1,
                                                       cutoff=0.7)
    if close:
        return UsageError(f"--distribution {name!r} {reason}; did you mean {close[0]}?")
    return UsageError(f"--distribution {name!r} {reason}; valid names: {', '.join(names)}")


def _stable_index(name: str, released: list[Release], back: int,
                  releases: Sequence[Release]) -> str:
    index = len(released) - 1 - back
    if index < 0:
        raise _bad_name(name, releases, "has no release as of today in the Debian release list")
    return released[index].series


def _testing(name: str, releases: Sequence[Release], today: date) -> str:
    ordered = [r for r in _ordered(releases) if r.series not in ROLLING]
    released = _released(releases, today)
    start = ordered.index(released[-1]) + 1 if released else 0
    # Only the series right after stable can be testing: a codename announced
    # further ahead (already in the csv) is not open for uploads yet.
    if start < len(ordered):
        candidate = ordered[start]
        created_ok = candidate.created is not None and candidate.created <= today
        unreleased = candidate.release is None or candidate.release > today
        if created_ok and unreleased:
            return candidate.series
    raise _bad_name(name, releases, "has no release as of today in the Debian release list")


def resolve(name: str, today: date | None = None,
            releases: Sequence[Release] | None = None) -> str:
    """Turn a codename or suite alias into the codename debootstrap needs."""
    if releases is None:
        releases = load_releases()
    if today is None:
        today = date.today()
    key = name.strip().lower()
    if key == "unstable":
        key = "sid"
    if key in ROLLING or key in {r.series for r in releases}:
        return key
    released = _released(releases, today)
    if key == "stable":
        return _stable_index(name, released, 0, releases)
    if key == "oldstable":
        return _stable_index(name, released, 1, releases)
    if key == "oldoldstable":
        return _stable_index(name, released, 2, releases)
    if key == "testing":
        return _testing(name, releases, today)
    raise _bad_name(name, releases)


def is_older_than(codename: str, other: str,
                  releases: Sequence[Release] | None = None) -> bool:
    """True when codename came before other (sid and experimental are newest)."""
    if releases is None:
        releases = load_releases()
    rank = [r.series for r in releases if r.series not in ROLLING] + list(ROLLING)
    positions = []
    for name in (codename, other):
        key = name.strip().lower()
        if key not in rank:
            raise _bad_name(name, releases)
        positions.append(rank.index(key))
    return positions[0] < positions[1]


def default_distribution(today: date | None = None,
                         releases: Sequence[Release] | None = None) -> str:
    return resolve("stable", today=today, releases=releases)
