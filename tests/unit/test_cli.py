"""cli.main end to end on the fake host: exit codes, messages, --dry-run, secrets."""

from __future__ import annotations

import os
import pwd
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.conftest import MIRROR, SECRET, CliResult, parse
from vmdebootstrap import build as build_module
from vmdebootstrap import cli
from vmdebootstrap import plan as plan_module
from vmdebootstrap.errors import BuildError, UsageError
from vmdebootstrap.host import userns
from vmdebootstrap.intent.options import OPTIONS, Kind
from vmdebootstrap.plan import Host, Plan, make_plan

RunCli = Callable[..., CliResult]
PREFIX = "vmdebootstrap: error: "
OTHER_SECRET = "An0ther-r00t-secret"


def files_under(path: Path) -> set[Path]:
    return set(path.rglob("*"))


def error_lines(result: CliResult) -> list[str]:
    lines = result.err.splitlines()
    assert lines and all(line.startswith(PREFIX) for line in lines), result.err
    assert "Traceback" not in result.err
    return [line.removeprefix(PREFIX) for line in lines]


@pytest.fixture
def no_build(monkeypatch: pytest.MonkeyPatch) -> list[Plan]:
    """Replaces the real build; records the plans it was given."""
    plans: list[Plan] = []

    def fake_build(plan: Plan, runner: object) -> None:
        plans.append(plan)

    monkeypatch.setattr(build_module, "build", fake_build)
    monkeypatch.setattr(cli, "_install_signal_handlers", lambda: None)
    return plans


# --- --dry-run ---------------------------------------------------------------------


def test_dry_run_prints_the_plan(run_cli: RunCli, host: Host, out: Path,
                                 no_build: list[Plan]) -> None:
    argv = ("--dry-run", "--iso", str(out / "live.iso"), "--squash", str(out / "live"),
            "--sudo", "--package", "less", "--user", "alice/", "--hostname", "live")
    result = run_cli(*argv)
    assert result.code == 0, result.err
    plan = make_plan(parse(*argv), host)
    assert "dry run" in result.out
    assert str(out / "live.iso") in result.out and str(out / "live") in result.out
    (bootstrap,) = [line for line in result.out.splitlines() if line.startswith("bootstrap: ")]
    assert bootstrap.startswith("bootstrap: mmdebstrap --mode=root ")
    assert " --architectures=amd64 " in bootstrap
    assert bootstrap.endswith(f"trixie '<workdir>/root' {MIRROR}/")
    for package in plan.packages:
        assert package in bootstrap
        assert package in result.out
    assert "kernel package: linux-image-amd64" in result.out
    assert set(plan.packages) >= {"linux-image-amd64", "live-boot", "sudo", "acpid", "less"}
    assert "users: alice (sudo)" in result.out
    assert "hostname: live" in result.out
    assert ("ISO's UEFI boot: Debian's signed shim and grub, if the suite has them "
            "(Secure Boot)") in result.out
    assert not no_build
    unsigned = run_cli(*argv, "--no-secure-boot")
    assert "ISO's UEFI boot: a GRUB image built here (no Secure Boot)" in unsigned.out
    assert "ISO's UEFI boot" not in run_cli("--dry-run", "--tarball", "r.tar").out


def test_dry_run_shows_debootstrap_fallback(run_cli: RunCli) -> None:
    result = run_cli("--dry-run", "--tarball", "root.tar", "--debootstrapopts",
                     "variant=minbase exclude=nano")
    assert result.code == 0
    assert "bootstrap: debootstrap --arch=amd64 --variant=minbase --exclude=nano" in result.out
    assert "note: using debootstrap instead of mmdebstrap" in result.out
    # Said once: in the plan, not logged as a warning as well.
    assert (result.out + result.err).count("using debootstrap instead of mmdebstrap") == 1


def test_dry_run_writes_nothing(run_cli: RunCli, tmp_path: Path, host: Host,
                                no_build: list[Plan]) -> None:
    script = host.cwd / "hook.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    before = files_under(tmp_path)
    result = run_cli("--dry-run", "--image", "disk.img", "--size", "3G", "--log", "x.log",
                     "--pkglist", "--convert-qcow2", "--customize", "hook.sh", "--owner",
                     "builder")
    assert result.code == 0, result.err
    assert files_under(tmp_path) == before
    assert not no_build


def test_dry_run_needs_no_root(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert run_cli("--dry-run", "--tarball", "root.tar").code == 0


def test_debian_cd_call_dry_run(run_cli: RunCli, host: Host, tmp_path: Path) -> None:
    hooks = host.cwd / "hooks"
    hooks.mkdir()
    (hooks / "live-amd64.sh").write_text("#!/bin/sh\n")
    (hooks / "live-amd64.sh").chmod(0o755)
    (host.cwd / "out").mkdir()
    before = files_under(tmp_path)
    result = run_cli(
        "--owner", "builder", "--verbose", "--sudo", "--lock-root-password",
        "--enable-dhcp", "--configure-apt", "--apt-mirror", MIRROR, "--mirror", MIRROR,
        "--log", "x.log", "--log-level", "debug", "--user", "user/live", "--arch", "amd64",
        "--distribution", "bookworm", "--customize", "hooks/live-amd64.sh",
        "--squash", "out/amd64", "--dry-run")
    assert result.code == 0, result.err
    assert "distribution: bookworm" in result.out
    assert "root: locked" in result.out
    assert "users: user (sudo)" in result.out
    assert f"customisation hook: {hooks / 'live-amd64.sh'}" in result.out
    assert files_under(tmp_path) == before


# --- secrets ----------------------------------------------------------------------


def test_passwords_not_in_dry_run_output(run_cli: RunCli) -> None:
    result = run_cli("--dry-run", "--verbose", "--tarball", "root.tar", "--user",
                     f"alice/{SECRET}", "--root-password", OTHER_SECRET, "--sudo")
    assert result.code == 0, result.err
    assert "root: password set" in result.out
    for secret in (SECRET, OTHER_SECRET):
        assert secret not in result.out + result.err


def test_passwords_not_in_dump_config(run_cli: RunCli) -> None:
    result = run_cli("--dump-config", "--user", f"alice/{SECRET}", "--root-password",
                     OTHER_SECRET)
    assert result.code == 0
    assert result.out.startswith("[config]\n")
    assert "# user is set (not shown)" in result.out
    for secret in (SECRET, OTHER_SECRET):
        assert secret not in result.out + result.err


@pytest.mark.parametrize("argv", [
    ("--user", f"Alice/{SECRET}"),
    ("--user", SECRET),
    ("--user", f"root/{SECRET}"),
    ("--user", f"alice/{SECRET}", "--user", f"alice/{SECRET}"),
    ("--user", f"alice/{SECRET}\n"),
    ("--root-password", SECRET, "--lock-root-password"),
    ("--root-password", f"{SECRET}\n"),
    ("--root-password", SECRET, "--user", f"bob/{SECRET}", "--hostname", "bad_host"),
])
def test_passwords_not_in_error_messages(run_cli: RunCli, argv: tuple[str, ...]) -> None:
    result = run_cli("--tarball", "root.tar", *argv)
    assert result.code == 2
    error_lines(result)
    assert SECRET not in result.out + result.err


def test_password_in_config_not_in_errors(run_cli: RunCli, tmp_path: Path) -> None:
    conf = tmp_path / "vm.conf"
    conf.write_text(f"[config]\ntarball = root.tar\nuser = {SECRET}\nsize = 12Q\n")
    result = run_cli("--config", str(conf))
    assert result.code == 2
    assert len(error_lines(result)) == 2  # both reported in one run
    assert SECRET not in result.err
    conf.write_text(f"[config]\ntarball = root.tar\nuser = {SECRET}\n")
    result = run_cli("--config", str(conf))
    assert result.code == 2
    assert SECRET not in result.err


# --- errors -------------------------------------------------------------------------


def test_one_error_line_per_problem(run_cli: RunCli, host: Host) -> None:
    argv = ("--image", "disk.img", "--tarball", "root.zip", "--hostname=bad_host",
            "--apt-mirror", MIRROR, "--owner", "nobody-here", "--package", "Bad Name")
    with pytest.raises(UsageError) as info:
        make_plan(parse(*argv), host)
    result = run_cli(*argv)
    assert result.code == 2
    assert result.out == ""
    assert error_lines(result) == info.value.problems
    assert len(info.value.problems) >= 5


def test_a_multi_line_problem_stays_on_one_line(run_cli: RunCli,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(settings: object, host: object = None) -> Plan:
        raise UsageError(["--x: first\nsecond", "--y: third"])

    monkeypatch.setattr(plan_module, "make_plan", refuse)
    result = run_cli("--tarball", "root.tar")
    assert error_lines(result) == ["--x: first\\nsecond", "--y: third"]


@pytest.mark.parametrize(("argv", "fragment"), [
    (("--frobnicate",), "--frobnicate: no such option"),
    (("--tarball", "r.tar", "extra"), "unexpected argument 3 'extra': vmdebootstrap takes "
     "no positional arguments; options start with --"),
    (("--tarball",), "--tarball: give it a value"),
    (("--tarb", "r.tar"), "--tarb: no such option; did you mean --tarball?"),  # no abbreviations
    (("--no-no-kernel",), "--no-no-kernel: no such option; did you mean --no-kernel?"),
    (("--size", "12Q", "--tarball", "r.tar"), "--size: '12Q' is not a size"),
    (("--tarball", "r.tar", "--roottype", "zfs"), "--roottype: 'zfs' is not one of"),
    (("--tarball", "r.tar", "--log-level", "loud"), "--log-level: 'loud' is not one of"),
    (("--iso", "live.iso", "--no-kernel"), "--no-kernel: a --iso output needs a kernel"),
    ((), "no output given"),
])
def test_bad_input_exits_2(run_cli: RunCli, argv: tuple[str, ...], fragment: str) -> None:
    result = run_cli(*argv)
    assert result.code == 2
    assert any(fragment in line for line in error_lines(result)), result.err


def test_missing_config_file(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("--config", str(tmp_path / "no.conf"), "--tarball", "r.tar")
    assert result.code == 2
    assert error_lines(result) == [f"--config: {tmp_path / 'no.conf'}: no such file"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("vmdebootstrap ")


# --- building (the build itself is faked) ----------------------------------------------


@pytest.fixture
def user_without_ids(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An ordinary user with no subordinate ids."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for name in ("SUBUID", "SUBGID"):
        empty = tmp_path / name.lower()
        empty.write_text("")
        monkeypatch.setattr(userns, name, empty)


def test_non_root_without_subordinate_ids_is_refused(
        run_cli: RunCli, user_without_ids: None, tmp_path: Path, no_build: list[Plan]) -> None:
    before = files_under(tmp_path)
    result = run_cli("--tarball", "root.tar", "--log", "x.log")
    assert result.code == 2
    assert "without root inside a user namespace" in result.err
    assert "subuid has no range" in result.err and "usermod --add-subuids" in result.err
    assert not no_build
    assert files_under(tmp_path) == before


def test_a_users_dry_run_says_what_would_stop_the_build(
        run_cli: RunCli, user_without_ids: None, no_build: list[Plan]) -> None:
    result = run_cli("--image", "disk.img", "--size", "2G", "--dry-run")
    assert result.code == 0
    assert "without root, the build would stop: --image needs root" in result.err
    assert "without root, the build would stop: " in result.err and "subuid" in result.err
    assert not no_build


def test_non_root_disk_image_is_refused(run_cli: RunCli, user_without_ids: None,
                                        no_build: list[Plan]) -> None:
    result = run_cli("--image", "disk.img", "--size", "2G")
    assert result.code == 2
    assert "--image needs root" in result.err and "run it as root" in result.err
    result = run_cli("--squash", "live", "--layered")
    assert result.code == 2 and "--layered needs root" in result.err
    result = run_cli("--tarball", "root.tar", "--owner", "builder")
    assert result.code == 2 and "--owner builder: only root can give files away" in result.err
    assert not no_build


def test_non_root_builds_as_root_of_a_namespace(
        run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        no_build: list[Plan]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    me = pwd.getpwuid(os.getuid()).pw_name
    (tmp_path / "ids").write_text(f"someone:1:1\n{me}:200000:1000\n{me}:300000:70000\n")
    monkeypatch.setattr(userns, "SUBUID", tmp_path / "ids")
    monkeypatch.setattr(userns, "SUBGID", tmp_path / "ids")
    monkeypatch.setattr(userns.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(userns, "kernel_problem", lambda: None)
    entered: list[userns.IdMap] = []

    def fake_enter(ids: userns.IdMap, runner: object, body: Callable[[], int],
                   on_error: Callable[[BaseException], int]) -> int:
        entered.append(ids)
        return body()

    monkeypatch.setattr(cli.rootless, "as_namespace_root", fake_enter)
    result = run_cli("--tarball", "root.tar", "--log", "x.log")
    assert result.code == 0, result.err
    (ids,) = entered
    assert ids.uid_args() == ["0", str(os.getuid()), "1", "1", "300000", "65536"]
    assert len(no_build) == 1


def test_root_builds_the_plan(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, host: Host,
                              no_build: list[Plan]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    result = run_cli("--tarball", "root.tar", "--log", "x.log", "--debootstrapopts",
                     "exclude=nano")
    assert result.code == 0, result.err
    (plan,) = no_build
    assert plan.output == "tarball" and plan.bootstrap_tool == "debootstrap"
    log_file = host.cwd / "x.log"
    assert log_file.stat().st_mode & 0o777 == 0o600
    assert "using debootstrap instead of mmdebstrap" in log_file.read_text()


def test_log_in_a_missing_directory(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch,
                                    tmp_path: Path, no_build: list[Plan]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    result = run_cli("--tarball", "root.tar", "--log", str(tmp_path / "no" / "x.log"))
    assert result.code == 2
    assert any(line.startswith("--log:") for line in error_lines(result))
    assert not no_build


def test_log_that_cannot_be_opened(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch,
                                   tmp_path: Path, no_build: list[Plan]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    result = run_cli("--tarball", "root.tar", "--log", str(tmp_path))
    assert result.code == 2
    (line,) = error_lines(result)
    assert line.startswith(f"--log: cannot open {tmp_path}")
    assert not no_build


def test_build_error_exits_1(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch,
                             no_build: list[Plan]) -> None:
    def failing(plan: Plan, runner: object) -> None:
        raise BuildError("mmdebstrap failed\nE: last line")

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(build_module, "build", failing)
    result = run_cli("--tarball", "root.tar")
    assert result.code == 1
    assert result.err.splitlines() == ["vmdebootstrap: error: mmdebstrap failed",
                                       "vmdebootstrap: E: last line"]


def test_interrupt_exits_130(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch,
                             no_build: list[Plan]) -> None:
    def interrupted(plan: Plan, runner: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(build_module, "build", interrupted)
    result = run_cli("--tarball", "root.tar")
    assert result.code == 130
    assert "interrupted" in result.err


INSTALL_SIGNAL_HANDLERS = cli._install_signal_handlers  # no_build replaces it


def test_sighup_unwinds_and_exits_129(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch,
                                      no_build: list[Plan]) -> None:
    """A hang-up (the ssh session of a long build dropped) reaches the build
    as an exception, so every context manager unwinds, as for Ctrl-C."""
    unwound: list[str] = []

    def hung_up(plan: Plan, runner: object) -> None:
        try:
            signal.raise_signal(signal.SIGHUP)
        finally:
            unwound.append("teardown ran")

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(build_module, "build", hung_up)
    monkeypatch.setattr(cli, "_install_signal_handlers", INSTALL_SIGNAL_HANDLERS)
    old = {sig: signal.getsignal(sig) for sig in cli.STOP_SIGNALS}
    try:
        result = run_cli("--tarball", "root.tar")
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    assert result.code == 129
    assert unwound == ["teardown ran"]
    errors = [line for line in result.err.splitlines() if "error" in line]
    assert errors == ["vmdebootstrap: error: interrupted by SIGHUP; everything the build had "
                      "set up was undone"]


# --- random input: exit 0 or 2, never a traceback -----------------------------------------

TEXT_OPTIONS = [o.name for o in OPTIONS if o.kind is not Kind.BOOL]


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(TEXT_OPTIONS),
                          st.text(st.characters(codec="utf-8"), max_size=30)),
                min_size=1, max_size=3))
def test_random_values_exit_0_or_2(run_cli: RunCli, pairs: list[tuple[str, str]]) -> None:
    result = run_cli("--dry-run", "--tarball", "root.tar",
                     *(f"--{name}={value}" for name, value in pairs))
    assert result.code in (0, 2)
    if result.code == 2:
        error_lines(result)


@pytest.mark.parametrize("option", ["--user", "--package", "--hostname", "--size", "--config",
                                    "--root-password"])
def test_a_double_dash_value_is_refused_by_name(option: str, run_cli: Callable[..., CliResult]
                                                ) -> None:
    """argparse gives `--opt=--` an empty list; that is a usage error, not a crash."""
    result = run_cli("--dump-config", f"{option}=--")
    assert result.code == 2
    assert f"{option}: give it a value ('--' is not one)" in result.err
    assert "internal error" not in result.err
