"""Find the host's Debian mirror in its apt sources (the default --mirror).

Both formats apt reads are parsed: one-line ``sources.list`` entries and
deb822 ``*.sources`` stanzas.  Only ``deb`` entries count: ``deb-src`` never
gives a mirror debootstrap can install from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from vmdebootstrap.errors import UsageError, VmdebootstrapError

DEFAULT_ETC_APT = Path("/etc/apt")

NOT_PLAIN_SUFFIXES = ("-security", "-updates", "-backports", "-proposed-updates")
# debootstrap fetches over these; cdrom:, mirror+file: and the like it cannot use.
# A snapshot mirror names one state of an archive in its URL:
# .../archive/debian/20261201T000000Z/
SNAPSHOT_URL = re.compile(r"/archive/[^/]+/\d{8}T\d{6}Z/?$")

USABLE_SCHEMES = ("http", "https", "ftp", "file")
FALSE_WORDS = ("no", "false", "without", "off", "0")

NO_MIRROR = (
    "no Debian mirror found in the host's apt sources "
    "(/etc/apt/sources.list, /etc/apt/sources.list.d/*.sources); pass --mirror URL"
)


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    origin: str
    # Kept so that third-party repositories (which sign with their own key and
    # often reuse Debian's suite names) are not mistaken for the Debian archive.
    signed_by: str | None = None


def _split_options(text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if sep:
            options[key.rstrip("+-").lower()] = value
    return options


def parse_one_line(text: str, origin: str) -> list[AptSource]:
    """Parse sources.list format; malformed lines are skipped as apt would reject them."""
    sources: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        head = line.split(None, 1)
        if len(head) < 2 or head[0] != "deb":
            continue
        rest = head[1]
        options: dict[str, str] = {}
        if rest.startswith("["):
            inside, closed, rest = rest[1:].partition("]")
            if not closed:
                continue
            options = _split_options(inside)
        words = rest.split()
        if len(words) < 2:
            continue
        sources.append(AptSource(
            uri=words[0], suites=(words[1],), components=tuple(words[2:]),
            origin=origin, signed_by=options.get("signed-by"),
        ))
    return sources


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    fields: dict[str, str] = {}
    key: str | None = None
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if fields:
                yield fields
            fields, key = {}, None
            continue
        if raw[0] in " \t":
            if key is not None:
                fields[key] += "\n" + raw.strip()
            continue
        name, sep, value = raw.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        fields[key] = value.strip()
    if fields:
        yield fields


def parse_deb822(text: str, origin: str) -> list[AptSource]:
    """Parse a deb822 .sources file: one AptSource per URI of each enabled deb stanza."""
    sources: list[AptSource] = []
    for fields in _stanzas(text):
        if fields.get("enabled", "yes").strip().lower() in FALSE_WORDS:
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        suites = tuple(fields.get("suites", "").split())
        if not suites:
            continue
        signed_by = fields.get("signed-by") or None
        for uri in fields.get("uris", "").split():
            sources.append(AptSource(
                uri=uri, suites=suites, components=tuple(fields.get("components", "").split()),
                origin=origin, signed_by=signed_by,
            ))
    return sources


def read_host_sources(etc_apt: Path = DEFAULT_ETC_APT) -> list[AptSource]:
    """All deb sources in apt's reading order: sources.list, then sources.list.d sorted."""
    files: list[Path] = []
    main = etc_apt / "sources.list"
    if main.is_file():
        files.append(main)
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        files.extend(p for p in sorted(parts.iterdir())
                     if p.is_file() and p.suffix in (".list", ".sources"))
    sources: list[AptSource] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise VmdebootstrapError(
                f"cannot read apt sources {path}: {exc.strerror or exc}; pass --mirror URL"
            ) from exc
        parse = parse_deb822 if path.suffix == ".sources" else parse_one_line
        sources.extend(parse(text, str(path)))
    return sources


def _signed_by_debian(signed_by: str | None) -> bool:
    if signed_by is None:
        return True
    if "BEGIN PGP" in signed_by:
        # An inline key cannot be told apart cheaply; give it the benefit of the doubt.
        return True
    return any("debian-archive" in PurePosixPath(word).name
               for word in signed_by.replace(",", " ").split())


def is_debian_archive(source: AptSource) -> bool:
    """A plain Debian archive: main suite (not security/updates/backports), has main."""
    parts = urlsplit(source.uri)
    if parts.scheme.lower() not in USABLE_SCHEMES:
        return False
    if parts.path.rstrip("/").endswith("-security"):
        return False
    if not any(not suite.endswith(NOT_PLAIN_SUFFIXES) for suite in source.suites):
        return False
    return "main" in source.components and _signed_by_debian(source.signed_by)


def normalise_uri(uri: str) -> str:
    return uri if uri.endswith("/") else uri + "/"


def default_mirror(etc_apt: Path = DEFAULT_ETC_APT) -> str:
    for source in read_host_sources(etc_apt):
        if is_debian_archive(source):
            return normalise_uri(source.uri)
    raise UsageError(NO_MIRROR)


def is_snapshot_url(url: str) -> bool:
    """Whether the URL names one archive state (a snapshot mirror's)."""
    return SNAPSHOT_URL.search(url.rstrip("/") + "/") is not None


def source_options(*, check_signatures: bool = True, snapshot: bool = False) -> str:
    """The [options] of a one-line apt source for the build's mirror: no
    signature check with --no-check-gpg (the bootstrap trusted the mirror
    as it is), no Valid-Until check for a snapshot (its Release files are
    old on purpose)."""
    options = ([] if check_signatures else ["trusted=yes"]) + \
        (["check-valid-until=no"] if snapshot else [])
    return f"[{' '.join(options)}] " if options else ""
