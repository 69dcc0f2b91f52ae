"""Bad input refused early and clearly: each problem names the option and
says what to do, all are reported together (exit 2), nothing is written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.conftest import CliResult

RunCli = Callable[..., CliResult]
PREFIX = "vmdebootstrap: error: "
NO_POSITIONALS = "vmdebootstrap takes no positional arguments; options start with --"


def errors(result: CliResult) -> list[str]:
    assert result.code == 2, (result.out, result.err)
    lines = result.err.splitlines()
    assert lines and all(line.startswith(PREFIX) for line in lines), result.err
    return [line.removeprefix(PREFIX) for line in lines]


# --- positional arguments ------------------------------------------------------------


@pytest.mark.parametrize(("argv", "problem"), [
    (("--tarball", "r.tar", "\udcff"),
     f"unexpected argument 3 (not valid UTF-8 text): {NO_POSITIONALS}"),
    (("--tarball", "r.tar", "--dry-run", "\udcff"),
     f"unexpected argument 4 (not valid UTF-8 text): {NO_POSITIONALS}"),
    (("\udcff", "--tarball", "r.tar"),
     f"unexpected argument 1 (not valid UTF-8 text): {NO_POSITIONALS}"),
    (("--tarball", "r.tar", "--hostname", "\udcff"),
     "--hostname: the value is not valid UTF-8 text"),
    (("--tarball", "r.tar", "--hostname=\udcff"), "--hostname: the value is not valid UTF-8 text"),
])
def test_text_that_is_not_utf8(run_cli: RunCli, argv: tuple[str, ...], problem: str) -> None:
    assert errors(run_cli(*argv)) == [problem]


@pytest.mark.parametrize(("argv", "problem"), [
    (("--tarball", "r.tar", "extra"), f"unexpected argument 3 'extra': {NO_POSITIONALS}"),
    (("build", "--tarball", "r.tar"), f"unexpected argument 1 'build': {NO_POSITIONALS}"),
    (("--tarball", "r.tar", "-"), f"unexpected argument 3 '-': {NO_POSITIONALS}"),
    (("--tarball", "r.tar", "--sudo", "yes"),
     f"unexpected argument 4 'yes' (--sudo is a switch and takes no value): {NO_POSITIONALS}"),
    (("--tarball", "r.tar", "--", "x"),
     "unexpected argument 3 '--': vmdebootstrap takes no positional arguments, so there is "
     "nothing for '--' to separate"),
])
def test_positional_arguments(run_cli: RunCli, argv: tuple[str, ...], problem: str) -> None:
    assert problem in errors(run_cli(*argv))


def test_every_positional_is_reported(run_cli: RunCli) -> None:
    assert errors(run_cli("one", "--tarball", "r.tar", "two")) == [
        f"unexpected argument 1 'one': {NO_POSITIONALS}",
        f"unexpected argument 4 'two': {NO_POSITIONALS}"]


def test_the_value_of_an_unknown_option_is_not_reported_again(run_cli: RunCli) -> None:
    assert errors(run_cli("--tarball", "r.tar", "--hostnme", "box")) == [
        "--hostnme: no such option; did you mean --hostname?"]


def test_a_value_that_looks_like_an_option(run_cli: RunCli) -> None:
    assert errors(run_cli("--tarball", "r.tar", "--size", "-1G")) == [
        "--size: give it a value (a value that starts with '-' is written --size=VALUE)"]


# --- --dump-config runs the plan's checks ----------------------------------------------


def test_dump_config_refuses_what_cannot_build(run_cli: RunCli) -> None:
    result = run_cli("--dump-config", "--tarball", "r.tar", "--hostname", "bad_host",
                     "--apt-mirror", "http://mirror.example/debian")
    assert sorted(errors(result)) == [
        "--apt-mirror requires --configure-apt",
        "--hostname: 'bad_host' is not a valid host name (letters, digits and '-', "
        "dot-separated labels)"]
    assert result.out == ""


def test_dump_config_with_bad_values_reports_the_plan_too(run_cli: RunCli) -> None:
    found = errors(run_cli("--dump-config", "--size", "12Q", "--hostname", "bad_host"))
    assert len(found) == 2
    assert found[0].startswith("--size: '12Q' is not a size")
    assert found[1].startswith("--hostname: 'bad_host'")


def test_dump_config_needs_no_output(run_cli: RunCli) -> None:
    """A config file often serves several outputs (1.x's examples have none)."""
    result = run_cli("--dump-config", "--installer", "--sudo")
    assert result.code == 0, result.err
    assert "installer = yes" in result.out


def test_dump_config_needs_no_host_tools(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    from vmdebootstrap import plan as plan_module

    monkeypatch.setattr(plan_module.shutil, "which", lambda name: None)
    result = run_cli("--dump-config", "--tarball", str(tmp_path / "r.tar"))
    assert result.code == 0, result.err
    assert result.out.startswith("[config]\n")
