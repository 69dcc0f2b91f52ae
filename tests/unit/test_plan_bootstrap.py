"""plan.bootstrap: --debootstrapopts, the bootstrap tool, the cache directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan import parse_debootstrapopts
from vmdebootstrap.plan.bootstrap import (
    Bootstrap,
    cache_dir_problems,
    check_bootstrap,
    check_cache,
    mmdebstrap_cannot,
)
from vmdebootstrap.plan.facts import default_cache_dir
from vmdebootstrap.plan.findings import Findings


def bootstrap_of(*opts: str, **values: object) -> tuple[Bootstrap, Findings]:
    found = Findings()
    settings = Settings(debootstrapopts=opts, no_cache=True).with_values(**values)
    return check_bootstrap(settings, found), found


def test_parse_debootstrapopts() -> None:
    opts, problems = parse_debootstrapopts(("variant=minbase", "--merged-usr", "include=a,b"))
    assert opts == [("variant", "minbase"), ("merged-usr", None), ("include", "a,b")]
    assert problems == []


def test_parse_debootstrapopts_problems() -> None:
    opts, problems = parse_debootstrapopts(("bogus", "variant", "verbose=1", "keyring="))
    assert opts == []
    assert problems[0].startswith("--debootstrapopts: unknown option 'bogus'; known: ")
    assert problems[1:] == [
        "--debootstrapopts: 'variant' needs a value, as in variant=VALUE",
        "--debootstrapopts: 'verbose' takes no value",
        "--debootstrapopts: 'keyring' needs a value, as in keyring=VALUE",
    ]


def test_defaults(tools_installed: None) -> None:
    bootstrap, found = bootstrap_of()
    assert bootstrap == Bootstrap(tool="mmdebstrap", opts=())
    assert bootstrap.variant is None and bootstrap.components == ("main",)
    assert found == Findings()


def test_variant_and_components(tools_installed: None) -> None:
    bootstrap, _ = bootstrap_of("variant=minbase", "components=main,contrib")
    assert bootstrap.variant == "minbase"
    assert bootstrap.components == ("main", "contrib")
    assert bootstrap.options == {"variant": "minbase", "components": "main,contrib"}


def test_fallback_to_debootstrap_is_noted(tools_installed: None) -> None:
    bootstrap, found = bootstrap_of("exclude=nano")
    assert bootstrap.tool == "debootstrap"
    assert found.notes == ["using debootstrap instead of mmdebstrap: it has no --exclude"]


def test_no_fallback_note_for_debootstrap(tools_installed: None) -> None:
    bootstrap, found = bootstrap_of("exclude=nano", bootstrap_tool="debootstrap")
    assert bootstrap.tool == "debootstrap" and found.notes == []


@pytest.mark.parametrize(("opts", "why"), [
    ({"exclude": "x"}, "it has no --exclude"),
    ({"extractor": "ar"}, "it has no equivalent of debootstrap's --extractor"),
    ({"no-resolve-deps": None}, "it has no equivalent of debootstrap's --no-resolve-deps"),
    ({"merged-usr": None}, "it has no equivalent of debootstrap's --merged-usr"),
    ({"variant": "fakechroot"}, "variant fakechroot is debootstrap's only"),
    ({"variant": "minbase"}, None),
    ({"include": "less"}, None),
])
def test_mmdebstrap_cannot(opts: dict[str, str | None], why: str | None) -> None:
    assert mmdebstrap_cannot(opts) == why


def test_missing_keyring(tools_installed: None, tmp_path: Path) -> None:
    _, found = bootstrap_of(f"keyring={tmp_path / 'no.gpg'}")
    assert found.problems == [f"--debootstrapopts: keyring {tmp_path / 'no.gpg'} "
                              "does not exist"]
    (tmp_path / "no.gpg").write_bytes(b"")
    assert bootstrap_of(f"keyring={tmp_path / 'no.gpg'}")[1].problems == []


def test_tool_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    _, found = bootstrap_of(bootstrap_tool="debootstrap")
    assert found.problems == ["--bootstrap-tool: debootstrap is not installed "
                              "(apt-get install debootstrap)"]
    assert bootstrap_of(bootstrap_tool="debootstrap", dry_run=True)[1].problems == []


def test_cache_dir_checked_unless_no_cache(tmp_path: Path) -> None:
    found = Findings()
    assert check_cache(Settings(cache_dir="cache"), tmp_path, found) == Path("cache")
    assert found.problems == ["--cache-dir: 'cache' must be an absolute path"]
    found = Findings()
    assert check_cache(Settings(no_cache=True, cache_dir="cache"), tmp_path, found) is None
    assert found.problems == []


def test_cache_dir_defaults_to_the_hosts(tmp_path: Path) -> None:
    found = Findings()
    assert check_cache(Settings(), tmp_path / "c", found) == tmp_path / "c"
    assert found.problems == []


@pytest.mark.parametrize(("euid", "environ", "expected"), [
    (0, {"HOME": "/root", "XDG_CACHE_HOME": "/x"}, "/var/cache/vmdebootstrap"),
    (1000, {"HOME": "/home/u"}, "/home/u/.cache/vmdebootstrap"),
    (1000, {"HOME": "/home/u", "XDG_CACHE_HOME": "/srv/c"}, "/srv/c/vmdebootstrap"),
    (1000, {"HOME": "/home/u", "XDG_CACHE_HOME": "rel"}, "/home/u/.cache/vmdebootstrap"),
])
def test_default_cache_dir_is_per_user(euid: int, environ: dict[str, str],
                                       expected: str) -> None:
    assert default_cache_dir(euid, environ) == Path(expected)


def test_cache_dir_may_be_created(tmp_path: Path) -> None:
    assert cache_dir_problems(str(tmp_path / "a" / "b")) == []


def test_cache_dir_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    assert cache_dir_problems(str(tmp_path / "f" / "cache")) == [
        f"--cache-dir: {tmp_path / 'f'} is not a directory"]


def test_cache_dir_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert cache_dir_problems(str(tmp_path / "cache")) == [
        f"--cache-dir: {tmp_path} is not writable (or use --no-cache)"]
