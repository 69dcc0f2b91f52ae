from __future__ import annotations

from pathlib import Path

import pytest

from vmdebootstrap.errors import UsageError, VmdebootstrapError
from vmdebootstrap.host.apt_sources import (
    AptSource,
    default_mirror,
    is_debian_archive,
    normalise_uri,
    parse_deb822,
    parse_one_line,
    read_host_sources,
)

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

DEB822 = f"""\
# Modernized from /etc/apt/sources.list
Types: deb deb-src
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
 non-free-firmware
Signed-By: {KEYRING}

Types: deb
URIs: http://security.mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: {KEYRING}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def src(uri: str = "http://mirror.example/debian", suites: tuple[str, ...] = ("bookworm",),
        components: tuple[str, ...] = ("main",), signed_by: str | None = None) -> AptSource:
    return AptSource(uri, suites, components, "test", signed_by)


# --- one-line format -------------------------------------------------------

def test_one_line_basic_comments_and_deb_src() -> None:
    text = """\
# a comment
deb http://mirror.example/debian bookworm main contrib  # trailing comment

deb-src http://mirror.example/debian bookworm main
	deb	file:/srv/mirror   trixie   main
"""
    assert parse_one_line(text, "f") == [
        AptSource("http://mirror.example/debian", ("bookworm",), ("main", "contrib"), "f"),
        AptSource("file:/srv/mirror", ("trixie",), ("main",), "f"),
    ]


def test_one_line_options() -> None:
    text = (f"deb [arch=amd64,i386 signed-by={KEYRING}] https://mirror.example/debian "
            "trixie main\n"
            "deb [ trusted=yes ] http://other.example/debian sid main\n"
            "deb [signed-by+=/k.gpg] http://third.example/debian sid main\n")
    got = parse_one_line(text, "f")
    assert got[0].signed_by == KEYRING
    assert got[0].uri == "https://mirror.example/debian"
    assert got[1].signed_by is None and got[1].suites == ("sid",)
    assert got[2].signed_by == "/k.gpg"


@pytest.mark.parametrize("line", [
    "deb",
    "deb http://mirror.example/debian",
    "deb [arch=amd64 http://mirror.example/debian bookworm main",
    "rpm http://mirror.example/debian bookworm main",
    "   # deb http://mirror.example/debian bookworm main",
])
def test_one_line_malformed_skipped(line: str) -> None:
    assert parse_one_line(line + "\n", "f") == []


def test_one_line_flat_repository_has_no_components() -> None:
    assert parse_one_line("deb file:/srv/repo ./\n", "f")[0].components == ()


# --- deb822 ----------------------------------------------------------------

def test_deb822_stanzas_and_continuation() -> None:
    got = parse_deb822(DEB822, "d")
    assert got[0] == AptSource("http://mirror.example/debian", ("bookworm", "bookworm-updates"),
                               ("main", "contrib", "non-free-firmware"), "d", KEYRING)
    assert got[1].uri.endswith("debian-security")
    assert len(got) == 2


def test_deb822_skips_disabled_src_only_and_incomplete() -> None:
    text = """\
Types: deb
URIs: http://a.example/debian
Suites: sid
Components: main
Enabled: no

Types: deb-src
URIs: http://b.example/debian
Suites: sid
Components: main

Types: deb
URIs: http://c.example/debian
Components: main

 orphan continuation line
not a field line
Types: deb
URIs: http://d.example/debian http://e.example/debian
Suites: sid
Components: main
Enabled: yes
"""
    got = parse_deb822(text, "d")
    assert [s.uri for s in got] == ["http://d.example/debian", "http://e.example/debian"]


def test_deb822_case_insensitive_keys_and_comments_inside_stanza() -> None:
    text = """\
types: deb
# a comment does not end the stanza
uris: http://mirror.example/debian
SUITES: trixie
components: main
"""
    assert parse_deb822(text, "d") == [
        AptSource("http://mirror.example/debian", ("trixie",), ("main",), "d")]


def test_deb822_inline_key_is_multi_line() -> None:
    text = """\
Types: deb
URIs: http://mirror.example/debian
Suites: trixie
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 abc
 -----END PGP PUBLIC KEY BLOCK-----
"""
    (got,) = parse_deb822(text, "d")
    assert got.signed_by is not None and "BEGIN PGP" in got.signed_by
    assert is_debian_archive(got)


# --- reading the host's files ----------------------------------------------

def test_read_host_sources_order_and_filters(tmp_path: Path) -> None:
    write(tmp_path / "sources.list", "deb http://one.example/debian sid main\n")
    parts = tmp_path / "sources.list.d"
    write(parts / "b.sources", "Types: deb\nURIs: http://three.example/debian\nSuites: sid\n"
          "Components: main\n")
    write(parts / "a.list", "deb http://two.example/debian sid main\n")
    write(parts / "c.list.disabled", "deb http://never.example/debian sid main\n")
    write(parts / "d.save", "deb http://never.example/debian sid main\n")
    (parts / "e.list").mkdir()
    got = read_host_sources(tmp_path)
    assert [s.uri for s in got] == ["http://one.example/debian", "http://two.example/debian",
                                    "http://three.example/debian"]
    assert got[0].origin == str(tmp_path / "sources.list")
    assert got[2].origin == str(parts / "b.sources")


def test_read_host_sources_empty_dir(tmp_path: Path) -> None:
    assert read_host_sources(tmp_path) == []


def test_read_host_sources_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "sources.list", "deb http://one.example/debian sid main\n")

    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(VmdebootstrapError, match=r"sources.list: Permission denied.*--mirror"):
        read_host_sources(tmp_path)


# --- choosing the mirror ---------------------------------------------------

def test_default_mirror_deb822(tmp_path: Path) -> None:
    write(tmp_path / "sources.list.d" / "debian.sources", DEB822)
    assert default_mirror(tmp_path) == "http://mirror.example/debian/"


def test_default_mirror_skips_security_updates_backports(tmp_path: Path) -> None:
    write(tmp_path / "sources.list", """\
deb http://security.mirror.example/debian-security/ bookworm-security main
deb http://security.mirror.example/debian-security bookworm main
deb http://mirror.example/debian bookworm-updates main
deb http://mirror.example/debian bookworm-backports main
deb http://mirror.example/debian bookworm-proposed-updates main
deb-src http://src.example/debian bookworm main
deb file:///srv/mirror/ bookworm main
""")
    assert default_mirror(tmp_path) == "file:///srv/mirror/"


def test_default_mirror_skips_third_party_and_disabled(tmp_path: Path) -> None:
    parts = tmp_path / "sources.list.d"
    write(parts / "a-docker.list", "deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc] "
          "https://download.example/linux/debian bookworm stable\n")
    write(parts / "b-vendor.list", "deb [signed-by=/etc/apt/keyrings/vendor.gpg] "
          "https://vendor.example/repo stable main\n")
    write(parts / "c-off.sources", "Types: deb\nURIs: http://off.example/debian\n"
          "Suites: bookworm\nComponents: main\nEnabled: no\n")
    write(parts / "debian.sources", DEB822)
    assert default_mirror(tmp_path) == "http://mirror.example/debian/"


def test_default_mirror_none_found(tmp_path: Path) -> None:
    write(tmp_path / "sources.list", "deb cdrom:[Debian]/ bookworm main\n")
    with pytest.raises(UsageError) as info:
        default_mirror(tmp_path)
    assert str(info.value) == (
        "no Debian mirror found in the host's apt sources (/etc/apt/sources.list, "
        "/etc/apt/sources.list.d/*.sources); pass --mirror URL")


@pytest.mark.parametrize(("source", "expected"), [
    (src(), True),
    (src("https://mirror.example/debian/"), True),
    (src("ftp://mirror.example/debian"), True),
    (src("file:/srv/mirror"), True),
    (src("cdrom:[Debian]/"), False),
    (src("mirror+file:/etc/apt/mirrors.txt"), False),
    (src("http://mirror.example/debian-security"), False),
    (src(suites=("bookworm-security",)), False),
    (src(suites=("bookworm-updates", "bookworm")), True),
    (src(components=("contrib",)), False),
    (src(components=()), False),
    (src(signed_by=KEYRING), True),
    (src(signed_by="/usr/share/keyrings/debian-archive-trixie-stable.gpg"), True),
    (src(signed_by="/etc/apt/keyrings/vendor.gpg"), False),
])
def test_is_debian_archive(source: AptSource, expected: bool) -> None:
    assert is_debian_archive(source) is expected


@pytest.mark.parametrize(("uri", "expected"), [
    ("http://mirror.example/debian", "http://mirror.example/debian/"),
    ("http://mirror.example/debian/", "http://mirror.example/debian/"),
    ("file:/srv/mirror", "file:/srv/mirror/"),
])
def test_normalise_uri(uri: str, expected: str) -> None:
    assert normalise_uri(uri) == expected


def test_deb822_extra_blank_lines() -> None:
    text = "\n\nTypes: deb\nURIs: http://mirror.example/debian\nSuites: sid\n" \
           "Components: main\n\n\n"
    assert [s.uri for s in parse_deb822(text, "d")] == ["http://mirror.example/debian"]


def test_one_line_option_without_value_is_ignored() -> None:
    (got,) = parse_one_line("deb [junk arch=amd64] http://mirror.example/debian sid main\n", "f")
    assert got.signed_by is None and got.uri == "http://mirror.example/debian"
