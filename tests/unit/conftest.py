"""Shared fixtures: a fake build host, so planning needs no root, network or
files outside tmp_path.

The host has a fake /etc/apt naming a made-up mirror, a fake binfmt_misc
with a qemu-aarch64 handler, a fixed release list and "today", fast fake
password hashing, and an injectable user table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from tests.unit import hostguard
from vmdebootstrap import cli
from vmdebootstrap import plan as plan_module
from vmdebootstrap.errors import UsageError
from vmdebootstrap.host import distro, passwords
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan import Host, Plan, make_plan

MIRROR = "http://mirror.example/debian"
# 2025-10-01: trixie is stable, forky testing.
TODAY = date(2025, 10, 1)
SECRET = "Sekr1t-pa55word"

RELEASES_CSV = """\
version,codename,series,created,release,eol,eol-lts,eol-elts
7,Wheezy,wheezy,2011-02-06,2013-05-04,2016-04-25,2018-05-31,2020-06-30
8,Jessie,jessie,2013-05-04,2015-04-25,2018-06-17,2020-06-30,2025-06-30
9,Stretch,stretch,2015-04-25,2017-06-17,2020-07-18,2022-06-30,2027-06-30
10,Buster,buster,2017-06-17,2019-07-06,2022-09-10,2024-06-30,2029-06-30
11,Bullseye,bullseye,2019-07-06,2021-08-14,2024-08-14,2026-08-31,2031-06-30
12,Bookworm,bookworm,2021-08-14,2023-06-10,2026-07-11,2028-06-30,2033-06-30
13,Trixie,trixie,2023-06-10,2025-08-09,2028-08-09,2030-06-30,2035-06-30
14,Forky,forky,2025-08-09
15,Duke,duke,2027-08-01
,Sid,sid,1993-08-16
,Experimental,experimental,1993-08-16
"""

DEB822 = f"""\
Types: deb
URIs: {MIRROR}
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

QEMU_AARCH64 = """\
enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: PF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.quick)


@pytest.fixture(autouse=True)
def host_untouched() -> Iterator[None]:
    """No unit test changes the real /etc or /var/cache, or uses the network."""
    hostguard.violations.clear()
    hostguard.armed = True
    try:
        yield
    finally:
        hostguard.armed = False
    assert hostguard.violations == [], "a unit test touched the host"


class FakeCrypt:
    """Instant stand-in for libxcrypt; the hash never contains the password."""

    def gensalt(self, prefix: str) -> str | None:
        return prefix + "fakesalt$"

    def crypt(self, phrase: bytes, setting: str) -> str | None:
        return setting + hashlib.sha256(phrase).hexdigest()


@pytest.fixture
def fake_releases(monkeypatch: pytest.MonkeyPatch) -> None:
    releases = distro.parse_releases(RELEASES_CSV, "<test csv>")
    monkeypatch.setattr(distro, "load_releases", lambda *args: releases)


@pytest.fixture
def fake_crypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "_backend", FakeCrypt())


@pytest.fixture
def tools_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """mmdebstrap and debootstrap are 'installed'; nothing else is."""
    monkeypatch.setattr(plan_module.shutil, "which",
                        lambda name: f"/usr/bin/{name}"
                        if name in ("mmdebstrap", "debootstrap") else None)


@pytest.fixture
def etc_apt(tmp_path: Path) -> Path:
    path = tmp_path / "etc-apt"
    (path / "sources.list.d").mkdir(parents=True)
    (path / "sources.list.d" / "debian.sources").write_text(DEB822)
    return path


@pytest.fixture
def binfmt_dir(tmp_path: Path) -> Path:
    path = tmp_path / "binfmt_misc"
    path.mkdir()
    (path / "status").write_text("enabled\n")
    (path / "qemu-aarch64").write_text(QEMU_AARCH64)
    return path


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An existing, writable directory for outputs."""
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture
def host(tmp_path: Path, etc_apt: Path, binfmt_dir: Path, fake_releases: None,
         fake_crypt: None, tools_installed: None, monkeypatch: pytest.MonkeyPatch) -> Host:
    """An amd64 host; the process runs in tmp_path/work, as does Host.cwd."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return Host(arch="amd64", etc_apt=etc_apt, binfmt_dir=binfmt_dir, today=TODAY,
                cwd=work, user_exists=lambda name: name in ("builder", "root"),
                cache_dir=tmp_path / "cache")


def parse(*argv: str) -> Settings:
    return cli.parse([*argv, "--no-default-configs"])[0]


@pytest.fixture
def plan_of(host: Host) -> Callable[..., Plan]:
    def run(*argv: str) -> Plan:
        return make_plan(parse(*argv), host)
    return run


@pytest.fixture
def problems_of(host: Host) -> Callable[..., list[str]]:
    """The problems make_plan (or parsing) reports; fails if there are none."""
    def run(*argv: str) -> list[str]:
        with pytest.raises(UsageError) as info:
            make_plan(parse(*argv), host)
        return info.value.problems
    return run


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(host: Host, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., CliResult]]:
    """cli.main with the fake host; returns exit code, stdout and stderr."""
    real = plan_module.make_plan
    monkeypatch.setattr(plan_module, "make_plan",
                        lambda settings, _host=None: real(settings, host))

    def run(*argv: str) -> CliResult:
        code = cli.main([*argv, "--no-default-configs"])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    propagate = cli.log.propagate
    yield run
    # main() set up logging for this run: leave no handlers on closed streams.
    for handler in list(cli.log.handlers):
        cli.log.removeHandler(handler)
        handler.close()
        stream = getattr(handler, "stream", None)
        fd = getattr(stream, "name", None)
        if stream is not None and isinstance(fd, int) and fd > 2:
            stream.close()  # the --log file, opened with os.fdopen
    cli.log.propagate = propagate
