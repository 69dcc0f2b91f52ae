"""The private apt on the build host: its configuration, sources and argv,
and that it answers 'the suite lacks these' apart from other failures."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests.fakes import RecordingRunner
from vmdebootstrap.errors import BuildError
from vmdebootstrap.host import helper_apt
from vmdebootstrap.host.helper_apt import Archive, HelperApt
from vmdebootstrap.host.run import CommandError, Result

MIRROR = "http://mirror.example/debian/"


def test_sources_list() -> None:
    assert helper_apt.sources_list(Archive(MIRROR, "trixie")) == (
        "deb http://mirror.example/debian trixie main\n")
    assert helper_apt.sources_list(Archive(MIRROR, "sid", ("main", "contrib"),
                                           check_signatures=False)) == (
        "deb [trusted=yes] http://mirror.example/debian sid main contrib\n")


def test_apt_conf_keeps_everything_under_its_root(tmp_path: Path) -> None:
    conf = helper_apt.apt_conf(tmp_path / "apt", "arm64")
    assert f'Dir "{tmp_path}/apt/";' in conf
    assert 'APT::Architecture "arm64";' in conf and 'APT::Architectures "arm64";' in conf
    # Every absolute path it names is its own: nothing of the host's apt.
    paths = re.findall(r'"(/[^"]*)"', conf)
    assert paths and all(p.startswith(f"{tmp_path}/apt/") for p in paths)


def test_apt_conf_refuses_a_root_it_cannot_quote(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"apt\.conf"):
        helper_apt.apt_conf(tmp_path / 'a"b', "amd64")


def test_argv_and_env(tmp_path: Path) -> None:
    assert helper_apt.apt_get_argv("download", "shim-signed") == [
        "apt-get", "-q", "-o", "Dpkg::Use-Pty=0", "-o", "APT::Color=0", "download",
        "shim-signed"]
    assert helper_apt.unpack_argv(Path("/d/x.deb"), Path("/u")) == [
        "dpkg-deb", "--extract", "/d/x.deb", "/u"]
    assert helper_apt.apt_env(tmp_path) == {"APT_CONFIG": f"{tmp_path}/apt.conf"}


def test_missing_packages_as_apt_says_it() -> None:
    tail = ["Reading package lists...",
            "E: Unable to locate package shim-signed",
            "E: Unable to locate package grub-efi-amd64-signed",
            "E: Can't select candidate version from package virtual-one as it has no candidate",
            "E: Unable to locate package shim-signed"]
    assert helper_apt.missing_packages(tail) == [
        "shim-signed", "grub-efi-amd64-signed", "virtual-one"]
    assert helper_apt.missing_packages(["E: Failed to fetch http://m/x.deb  404"]) == []


def _keyring(tmp_path: Path, name: str = "archive.gpg") -> Path:
    key = tmp_path / "keys" / name
    key.parent.mkdir(exist_ok=True)
    key.write_bytes(b"\x99key")
    return key


def test_prepare_writes_its_own_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(helper_apt, "ARCHIVE_KEYRING", _keyring(tmp_path))
    root = tmp_path / "apt"
    HelperApt(RecordingRunner(), root, "amd64", Archive(MIRROR, "bookworm")).prepare()
    assert (root / "var/lib/dpkg/status").read_text() == ""
    assert (root / "etc/apt/sources.list").read_text().startswith("deb http://mirror.example")
    assert [p.name for p in (root / "etc/apt/trusted.gpg.d").iterdir()] == ["archive.gpg"]
    assert 'APT::Architecture "amd64";' in (root / "apt.conf").read_text()
    for d in ("var/lib/apt/lists/partial", "var/cache/apt/archives/partial",
              "etc/apt/apt.conf.d", "etc/apt/preferences.d"):
        assert (root / d).is_dir()


def test_prepare_trusts_the_builds_keyring_only(tmp_path: Path) -> None:
    key = _keyring(tmp_path, "mine")  # no suffix: apt would skip it
    root = tmp_path / "apt"
    HelperApt(RecordingRunner(), root, "amd64", Archive(MIRROR, "bookworm", keyring=key)
              ).prepare()
    assert [p.name for p in (root / "etc/apt/trusted.gpg.d").iterdir()] == ["mine.gpg"]
    keys = tmp_path / "keys"
    (keys / "other.asc").write_text("-----BEGIN PGP")
    HelperApt(RecordingRunner(), tmp_path / "apt2", "amd64",
              Archive(MIRROR, "bookworm", keyring=keys)).prepare()
    assert sorted(p.name for p in (tmp_path / "apt2/etc/apt/trusted.gpg.d").iterdir()) == [
        "other.asc"]


def test_prepare_needs_a_keyring_unless_unchecked(tmp_path: Path) -> None:
    archive = Archive(MIRROR, "bookworm", keyring=tmp_path / "missing.gpg")
    with pytest.raises(BuildError, match=r"missing\.gpg"):
        HelperApt(RecordingRunner(), tmp_path / "apt", "amd64", archive).prepare()
    unchecked = Archive(MIRROR, "bookworm", keyring=tmp_path / "missing.gpg",
                        check_signatures=False)
    HelperApt(RecordingRunner(), tmp_path / "apt", "amd64", unchecked).prepare()
    assert not list((tmp_path / "apt/etc/apt/trusted.gpg.d").iterdir())


class AptRunner(RecordingRunner):
    """apt-get answers with ``code`` and ``tail``; records env and cwd."""

    def __init__(self, code: int = 0, tail: Sequence[str] = ()) -> None:
        super().__init__()
        self.code, self.tail = code, list(tail)
        self.envs: list[Mapping[str, str] | None] = []
        self.cwds: list[str | os.PathLike[str] | None] = []

    def run(self, argv, **kw):  # type: ignore[no-untyped-def]
        super().run(argv, **kw)
        self.envs.append(kw.get("env"))
        self.cwds.append(kw.get("cwd"))
        if self.calls[-1][0] == "apt-get" and "download" in self.calls[-1]:
            if self.code and kw.get("check", True):
                raise AssertionError("download must not raise on its own")
            return Result(self.code, "", self.tail)
        return Result(0)


def test_update_and_download_use_the_private_config(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(helper_apt, "ARCHIVE_KEYRING", _keyring(tmp_path))
    runner = AptRunner()
    apt = HelperApt(runner, tmp_path / "apt", "amd64", Archive(MIRROR, "bookworm"))
    apt.update()
    assert apt.download(["shim-signed"], tmp_path / "debs") == []
    assert [c[-1] for c in runner.calls] == ["update", "shim-signed"]
    assert runner.envs == [{"APT_CONFIG": f"{tmp_path}/apt/apt.conf"}] * 2
    assert runner.cwds[1] == tmp_path / "debs"


def test_download_tells_missing_packages_from_failures(tmp_path: Path) -> None:
    missing = AptRunner(100, ["E: Unable to locate package shim-signed"])
    apt = HelperApt(missing, tmp_path / "apt", "amd64", Archive(MIRROR, "buster"))
    assert apt.download(["shim-signed", "grub-efi-amd64-signed"], tmp_path / "d") == [
        "shim-signed"]
    broken = AptRunner(100, ["E: Failed to fetch http://m/p.deb  Hash Sum mismatch"])
    apt = HelperApt(broken, tmp_path / "apt", "amd64", Archive(MIRROR, "buster"))
    with pytest.raises(CommandError, match="Hash Sum mismatch"):
        apt.download(["shim-signed"], tmp_path / "d")
