"""What 1.x scripts pass and hooks expect, accepted unchanged: --log-mode,
--update-initramfs, cliapp's --list-config-files, --dump-setting-names and
--help-all, --tarball of any name, and passwords read from standard input
(--user NAME/-, --root-password -)."""

from __future__ import annotations

import io
import logging
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.conftest import CliResult, parse
from vmdebootstrap import build as build_module
from vmdebootstrap import cli
from vmdebootstrap.errors import UsageError
from vmdebootstrap.host import passwords
from vmdebootstrap.host.passwords import hash_password, verify_password
from vmdebootstrap.host.run import SubprocessRunner
from vmdebootstrap.intent.config_files import default_config_files, dump_config
from vmdebootstrap.intent.options import BY_NAME, META_OPTIONS, OPPOSITES, OPTIONS
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan import Host, Plan, make_plan

RunCli = Callable[..., CliResult]
PlanOf = Callable[..., Plan]
PREFIX = "vmdebootstrap: error: "
ALICE_PW = "Al1ce-from-stdin"
BOB_PW = "B0b-from-stdin/with slash"
ROOT_PW = "R00t-from-stdin"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems(*argv: str) -> list[str]:
    with pytest.raises(UsageError) as info:
        parse(*argv)
    return info.value.problems


def errors(result: CliResult) -> list[str]:
    lines = result.err.splitlines()
    assert lines and all(line.startswith(PREFIX) for line in lines), result.err
    return [line.removeprefix(PREFIX) for line in lines]


@pytest.fixture
def no_build(monkeypatch: pytest.MonkeyPatch) -> list[Plan]:
    plans: list[Plan] = []
    monkeypatch.setattr(build_module, "build", lambda plan, runner: plans.append(plan))
    monkeypatch.setattr(cli, "_install_signal_handlers", lambda: None)
    return plans


# --- --log-mode ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "mode"), [
    ("0600", 0o600), ("600", 0o600), ("0644", 0o644), ("0640", 0o640), ("0", 0),
    ("0777", 0o777), (" 0640 ", 0o640), ("00644", 0o644),
])
def test_log_mode_values(text: str, mode: int) -> None:
    assert parse("--log-mode", text).log_mode == mode


def test_log_mode_default_is_0600() -> None:
    assert Settings().log_mode == 0o600
    assert parse().log_mode == 0o600


@pytest.mark.parametrize("text", ["0800", "rw-r--r--", "", " ", "01777", "4755", "1000",
                                  "-1", "0x1ff", "0o644", "6.4", "٦٤٤"])
def test_log_mode_refused_naming_the_option(text: str) -> None:
    (problem,) = problems(f"--log-mode={text}")
    assert problem.startswith("--log-mode: ")


def test_log_mode_in_a_config_file(tmp_path: Path) -> None:
    conf = write(tmp_path / "vm.conf", "[config]\nlog-mode = 0640\n")
    assert parse("--config", str(conf)).log_mode == 0o640
    write(conf, "[config]\nlog_mode = 9\n")
    (problem,) = problems("--config", str(conf))
    assert problem.startswith(f"'log-mode' in {conf}: '9' is not an octal file mode")


def test_log_mode_dumps_and_loads(tmp_path: Path) -> None:
    text = dump_config(parse("--log-mode", "640"))
    assert "log-mode = 0640" in text.splitlines()
    assert "log-mode = 0600" in dump_config(Settings()).splitlines()
    conf = write(tmp_path / "dumped.conf", text)
    assert parse("--config", str(conf)).log_mode == 0o640


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o664])
def test_log_file_is_created_with_the_mode(run_cli: RunCli, host: Host,
                                           monkeypatch: pytest.MonkeyPatch,
                                           no_build: list[Plan], mode: int) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    old_umask = os.umask(0o077)  # fchmod, not the umask, decides
    try:
        result = run_cli("--tarball", "root.tar", "--log", "x.log", "--log-mode", f"0{mode:o}")
    finally:
        os.umask(old_umask)
    assert result.code == 0, result.err
    assert no_build
    assert stat.S_IMODE((host.cwd / "x.log").stat().st_mode) == mode


def test_an_existing_log_gets_the_mode(host: Host) -> None:
    log_file = host.cwd / "x.log"
    log_file.write_text("old\n")
    log_file.chmod(0o666)
    try:
        cli.setup_logging(Settings(log=str(log_file), log_mode=0o640), cli.Masker())
        logging.getLogger("vmdebootstrap").warning("appended")
    finally:
        for handler in list(cli.log.handlers):
            cli.log.removeHandler(handler)
            handler.close()
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o640
    assert log_file.read_text().startswith("old\n") and "appended" in log_file.read_text()


# --- --update-initramfs -------------------------------------------------------------


@pytest.mark.parametrize(("argv", "skip"), [
    ((), False),
    (("--update-initramfs",), False),
    (("--no-update-initramfs",), True),
    (("--no-update-initramfs", "--update-initramfs"), False),
    (("--update-initramfs", "--no-update-initramfs"), True),
    (("--update-initramfs", "--no-update-initramfs", "--update-initramfs"), False),
])
def test_update_initramfs_later_spelling_wins(argv: tuple[str, ...], skip: bool) -> None:
    assert parse(*argv).no_update_initramfs is skip


def test_update_initramfs_reaches_the_plan(plan_of: PlanOf) -> None:
    assert plan_of("--tarball", "r.tar", "--update-initramfs").system.update_initramfs
    assert not plan_of("--tarball", "r.tar", "--update-initramfs",
                       "--no-update-initramfs").system.update_initramfs


@pytest.mark.parametrize(("line", "skip"), [
    ("update-initramfs = yes", False), ("update-initramfs = no", True),
    ("update_initramfs = false", True), ("update-initramfs = on", False),
    ("no-update-initramfs = yes", True), ("no_update_initramfs = no", False),
])
def test_update_initramfs_in_config_files(tmp_path: Path, line: str, skip: bool) -> None:
    conf = write(tmp_path / "vm.conf", f"[config]\n{line}\n")
    assert parse("--config", str(conf)).no_update_initramfs is skip


def test_command_line_overrides_config_update_initramfs(tmp_path: Path) -> None:
    conf = write(tmp_path / "vm.conf", "[config]\nupdate-initramfs = no\n")
    assert parse("--config", str(conf), "--update-initramfs").no_update_initramfs is False
    write(conf, "[config]\nupdate-initramfs = yes\n")
    assert parse("--config", str(conf), "--no-update-initramfs").no_update_initramfs is True


def test_a_later_config_file_overrides_update_initramfs(tmp_path: Path) -> None:
    one = write(tmp_path / "one.conf", "[config]\nno-update-initramfs = yes\n")
    two = write(tmp_path / "two.conf", "[config]\nupdate-initramfs = yes\n")
    assert parse("--config", str(one), "--config", str(two)).no_update_initramfs is False
    assert parse("--config", str(two), "--config", str(one)).no_update_initramfs is True


def test_both_spellings_in_one_config_file_refused(tmp_path: Path) -> None:
    conf = write(tmp_path / "vm.conf",
                 "[config]\nupdate-initramfs = yes\nno-update-initramfs = yes\n")
    (problem,) = problems("--config", str(conf))
    assert str(conf) in problem and "'update-initramfs' and 'no-update-initramfs'" in problem


def test_bad_update_initramfs_value_names_key_and_file(tmp_path: Path) -> None:
    conf = write(tmp_path / "vm.conf", "[config]\nupdate-initramfs = perhaps\n")
    (problem,) = problems("--config", str(conf))
    assert problem == f"'update-initramfs' in {conf}: 'perhaps' is not a boolean (use yes or no)"


@pytest.mark.parametrize("argv", [(), ("--update-initramfs",), ("--no-update-initramfs",)])
def test_dumped_update_initramfs_loads_back(tmp_path: Path, argv: tuple[str, ...]) -> None:
    original = parse(*argv)
    conf = write(tmp_path / "dumped.conf", dump_config(original))
    assert parse("--config", str(conf)).no_update_initramfs is original.no_update_initramfs


def test_opposite_names_clash_with_nothing() -> None:
    assert dict(OPPOSITES) == {"update-initramfs": BY_NAME["no-update-initramfs"]}
    for name in OPPOSITES:
        assert name not in BY_NAME and name not in META_OPTIONS
        assert f"--{name}" in cli.make_parser().format_help()


# --- --list-config-files, --dump-setting-names, --help-all ---------------------------


def test_list_config_files(host: Host, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    home_conf = write(tmp_path / "home" / ".vmdebootstrap.conf", "[config]\n")
    extra = write(tmp_path / "extra.conf", "not even a config file")
    missing = tmp_path / "missing.conf"
    defaults = default_config_files()
    assert home_conf in defaults
    code = cli.main(["--list-config-files", "--config", str(extra), "--config", str(missing)])
    assert code == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == [*map(str, defaults), str(extra), str(missing)]
    assert out.err == ""


def test_list_config_files_without_the_default_ones(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "home" / ".vmdebootstrap.conf", "[config]\n")
    assert run_cli("--list-config-files") == CliResult(0, "", "")
    result = run_cli("--list-config-files", "--config", "a.conf", "--config", "b.conf")
    assert result == CliResult(0, "a.conf\nb.conf\n", "")


def test_list_config_files_reads_no_stdin(run_cli: RunCli,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", Unreadable())
    assert run_cli("--list-config-files", "--root-password", "-").code == 0


def test_dump_setting_names(run_cli: RunCli) -> None:
    result = run_cli("--dump-setting-names")
    assert result.code == 0 and result.err == ""
    names = result.out.splitlines()
    assert names[:2] == ["image", "tarball"]
    assert set(names) == set(BY_NAME) | set(OPPOSITES)
    assert len(names) == len(set(names)) == len(OPTIONS) + len(OPPOSITES)
    assert "update-initramfs" in names and "log-mode" in names
    assert not set(names) & set(META_OPTIONS)


def test_every_setting_name_is_a_config_key(tmp_path: Path) -> None:
    for name in cli.setting_names():
        conf = write(tmp_path / f"{name}.conf", f"[config]\n{name} = \n")
        try:
            parse("--config", str(conf))
        except UsageError as exc:
            assert not any("unknown key" in p for p in exc.problems), exc.problems


@pytest.mark.parametrize("flag", ["--help-all", "--help"])
def test_help_all_is_the_full_help(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([flag])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text == cli.make_parser().format_help()
    for opt in OPTIONS:
        assert f"--{opt.name}" in text
    for meta in ("--help-all", "--list-config-files", "--dump-setting-names",
                 "--update-initramfs", "--log-mode"):
        assert meta in text


@pytest.mark.parametrize("key", ["list-config-files", "dump-setting-names", "help-all"])
def test_new_command_line_only_keys_refused_in_configs(tmp_path: Path, key: str) -> None:
    conf = write(tmp_path / "vm.conf", f"[config]\n{key} = yes\n")
    (problem,) = problems("--config", str(conf))
    assert f"unknown key '{key}'" in problem


# --- --tarball of any name -----------------------------------------------------------


@pytest.mark.parametrize("name", ["root", "root.zip", "root.img", "rootfs.tar.gz.part",
                                  "root.gz", "root.tbz2"])
def test_tarball_of_any_name_dry_runs(run_cli: RunCli, name: str) -> None:
    result = run_cli("--dry-run", "--tarball", name)
    assert result.code == 0, result.err
    assert f"output: --tarball {name}" in result.out


# --- passwords from standard input ---------------------------------------------------


class Unreadable(io.StringIO):
    """Standard input that must not be read."""

    def readline(self, size: int | None = -1) -> str:
        raise AssertionError("standard input was read")

    def read(self, size: int | None = -1) -> str:
        raise AssertionError("standard input was read")


class Failing(io.StringIO):
    def readline(self, size: int | None = -1) -> str:
        raise OSError(5, "Input/output error")


@pytest.fixture
def stdin(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], io.StringIO]:
    def feed(text: str) -> io.StringIO:
        stream = io.StringIO(text)
        monkeypatch.setattr(sys, "stdin", stream)
        return stream
    return feed


Stdin = Callable[[str], io.StringIO]


def test_user_and_root_from_stdin(stdin: Stdin) -> None:
    stream = stdin(f"{ALICE_PW}\n{ROOT_PW}\nnot read\n")
    s = parse("--user", "alice/-", "--root-password", "-")
    assert s.user == (f"alice/{ALICE_PW}",) and s.root_password == ROOT_PW
    assert stream.read() == "not read\n"  # one line for each '-', no more


def test_lines_go_in_command_line_order(stdin: Stdin) -> None:
    stdin(f"{ROOT_PW}\n{ALICE_PW}\n{BOB_PW}\n")
    s = parse("--root-password", "-", "--user", "alice/-", "--hostname", "x", "--user",
              "bob/-")
    assert s.root_password == ROOT_PW
    assert s.user == (f"alice/{ALICE_PW}", f"bob/{BOB_PW}")
    stdin(f"{ALICE_PW}\n{ROOT_PW}\n{BOB_PW}\n")
    s = parse("--user", "alice/-", "--root-password=-", "--user=bob/-")
    assert s.root_password == ROOT_PW
    assert s.user == (f"alice/{ALICE_PW}", f"bob/{BOB_PW}")


def test_only_the_dashes_read(stdin: Stdin) -> None:
    stdin(f"{BOB_PW}\n")
    s = parse("--user", "alice/literal", "--user", "bob/-", "--user", "carol/",
              "--user", "dave/a/-", "--root-password=-x")
    assert s.user == ("alice/literal", f"bob/{BOB_PW}", "carol/", "dave/a/-")
    assert s.root_password == "-x"


def test_only_the_last_root_password_counts(stdin: Stdin) -> None:
    stdin(f"{ALICE_PW}\n{ROOT_PW}\n")
    s = parse("--root-password", "-", "--user", "alice/-", "--root-password", "-")
    assert (s.user, s.root_password) == ((f"alice/{ALICE_PW}",), ROOT_PW)
    stdin(f"{ALICE_PW}\n")
    s = parse("--root-password", "-", "--user", "alice/-", "--root-password", "given")
    assert (s.user, s.root_password) == ((f"alice/{ALICE_PW}",), "given")


def test_stdin_not_read_without_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", Unreadable())
    s = parse("--user", "alice/x-", "--user", "bob/", "--root-password=-x", "--tarball", "-")
    assert s.user == ("alice/x-", "bob/") and s.root_password == "-x"


def test_only_the_newline_is_stripped(stdin: Stdin) -> None:
    stdin(f"  {ALICE_PW} \t\n{ROOT_PW}\r\n{BOB_PW}")  # the last line has no newline
    s = parse("--user", "alice/-", "--root-password", "-", "--user", "bob/-")
    assert s.user == (f"alice/  {ALICE_PW} \t", f"bob/{BOB_PW}")
    assert s.root_password == f"{ROOT_PW}\r"


def test_empty_line_is_an_empty_user_password(stdin: Stdin, plan_of: PlanOf) -> None:
    stdin("\n")
    (user,) = plan_of("--tarball", "r.tar", "--user", "alice/-").system.users
    assert user.name == "alice" and user.empty_password


def test_empty_line_for_root_refused(stdin: Stdin) -> None:
    stdin(f"\n{ALICE_PW}\n")
    (problem,) = problems("--root-password", "-", "--user", "alice/-")
    assert problem.startswith("--root-password -: the line read from standard input is empty")


@pytest.mark.parametrize(("text", "argv", "option", "count"), [
    ("", ("--root-password", "-"), "--root-password -", "1 of 1"),
    (f"{ALICE_PW}\n", ("--user", "alice/-", "--user", "bob/-"), "--user bob/-", "2 of 2"),
    (f"{ALICE_PW}\n", ("--user", "alice/-", "--root-password", "-", "--user", "bob/-"),
     "--root-password -", "2 of 3"),
])
def test_too_few_lines_names_the_option(stdin: Stdin, text: str, argv: tuple[str, ...],
                                        option: str, count: str) -> None:
    stdin(text)
    (problem,) = problems(*argv)
    assert problem.startswith(f"{option}: standard input ended before this password")
    assert count in problem and "command line order" in problem
    assert ALICE_PW not in problem


def test_unreadable_stdin_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", Failing())
    (problem,) = problems("--user", "alice/-", "--root-password", "-")
    assert problem.startswith("--user alice/-: cannot read the password from standard input")
    monkeypatch.setattr(sys, "stdin", None)
    (problem,) = problems("--root-password", "-")
    assert problem.startswith("--root-password -: there is no standard input")


def test_bad_text_on_stdin_refused_without_echo(stdin: Stdin) -> None:
    stdin(f"{ALICE_PW}\udcff\n{ROOT_PW}\0\n")
    found = problems("--user", "alice/-", "--root-password", "-")
    assert found == ["--user alice/-: the password on standard input is not valid UTF-8 text",
                     "--root-password: invalid value"]
    assert not any(ALICE_PW in p or ROOT_PW in p for p in found)


def test_hashes_verify_against_the_passwords_read(stdin: Stdin, plan_of: PlanOf,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "_backend", None)  # the real libxcrypt
    stdin(f"{ALICE_PW}\n{ROOT_PW}\n{BOB_PW}\n")
    plan = plan_of("--tarball", "r.tar", "--user", "alice/-", "--root-password", "-",
                   "--user", "bob/-")
    alice, bob = plan.system.users
    assert alice.password_hash and verify_password(ALICE_PW, alice.password_hash)
    assert bob.password_hash and verify_password(BOB_PW, bob.password_hash)
    root_hash = plan.system.root_password_hash
    assert root_hash and verify_password(ROOT_PW, root_hash)
    assert not verify_password(ALICE_PW, root_hash)
    for secret in (ALICE_PW, BOB_PW, ROOT_PW):
        assert secret not in repr(plan)


def test_fake_hash_is_of_the_line_read(stdin: Stdin, plan_of: PlanOf) -> None:
    stdin(f"{ALICE_PW}\n")
    (alice,) = plan_of("--tarball", "r.tar", "--user", "alice/-").system.users
    assert alice.password_hash == hash_password(ALICE_PW)  # the fake crypt's fixed salt


def test_dry_run_never_shows_stdin_passwords(run_cli: RunCli, stdin: Stdin) -> None:
    stdin(f"{ALICE_PW}\n{ROOT_PW}\n")
    result = run_cli("--dry-run", "--verbose", "--tarball", "root.tar", "--user", "alice/-",
                     "--root-password", "-", "--sudo")
    assert result.code == 0, result.err
    assert "users: alice (sudo)" in result.out and "root: password set" in result.out
    for secret in (ALICE_PW, ROOT_PW):
        assert secret not in result.out + result.err


def test_dump_config_never_shows_stdin_passwords(run_cli: RunCli, stdin: Stdin) -> None:
    stdin(f"{ALICE_PW}\n{ROOT_PW}\n")
    result = run_cli("--dump-config", "--user", "alice/-", "--root-password", "-")
    assert result.code == 0
    assert "# user is set (not shown)" in result.out
    assert "# root-password is set (not shown)" in result.out
    for secret in (ALICE_PW, ROOT_PW):
        assert secret not in result.out + result.err


def test_log_masks_stdin_passwords(run_cli: RunCli, stdin: Stdin, host: Host,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Even if a step logged one, the masker knows the passwords read."""
    seen: list[Plan] = []

    def leaky_build(plan: Plan, runner: SubprocessRunner) -> None:
        seen.append(plan)
        cli.log.warning("oops: %s and %s", ALICE_PW, ROOT_PW)
        assert runner.mask(f"argv {ALICE_PW} {ROOT_PW}") == "argv ******** ********"

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(build_module, "build", leaky_build)
    monkeypatch.setattr(cli, "_install_signal_handlers", lambda: None)
    stdin(f"{ALICE_PW}\n{ROOT_PW}\n")
    result = run_cli("--tarball", "root.tar", "--log", "x.log", "--user", "alice/-",
                     "--root-password", "-")
    assert result.code == 0, result.err
    assert seen
    text = (host.cwd / "x.log").read_text()
    assert "oops: ******** and ********" in text
    for secret in (ALICE_PW, ROOT_PW):
        assert secret not in text + result.out + result.err


def test_errors_never_show_stdin_passwords(run_cli: RunCli, stdin: Stdin) -> None:
    stdin(f"{ALICE_PW}\n{ROOT_PW}\n")
    result = run_cli("--tarball", "root.tar", "--user", "alice/-", "--root-password", "-",
                     "--lock-root-password", "--hostname", "bad_host")
    assert result.code == 2
    assert len(errors(result)) == 2
    for secret in (ALICE_PW, ROOT_PW):
        assert secret not in result.out + result.err


def test_too_few_lines_exit_2(run_cli: RunCli, stdin: Stdin) -> None:
    stdin("")
    result = run_cli("--dry-run", "--tarball", "root.tar", "--user", "alice/-")
    assert result.code == 2
    (line,) = errors(result)
    assert line.startswith("--user alice/-: standard input ended before this password")


@pytest.mark.parametrize(("line", "key"), [
    ("root-password = -", "root-password"),
    ("user = alice/-", "user"),
    ("user = bob/x, alice/-", "user"),
    ("root_password = -", "root_password"),
])
def test_config_files_cannot_read_stdin(tmp_path: Path, line: str, key: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", Unreadable())
    conf = write(tmp_path / "vm.conf", f"[config]\n{line}\n")
    (problem,) = problems("--config", str(conf))
    assert problem == (f"--config: {conf} line 2: '{key}': a password of '-' (read from "
                       "standard input) only works on the command line")


def test_config_file_dash_in_a_longer_password_is_a_password(tmp_path: Path,
                                                             host: Host) -> None:
    conf = write(tmp_path / "vm.conf", "[config]\nuser = alice/a-b\nroot-password = --\n")
    s = parse("--config", str(conf))
    assert s.user == ("alice/a-b",) and s.root_password == "--"
    assert make_plan(s.with_values(tarball="r.tar"), host).system.root_password_hash


def test_command_line_dash_overrides_a_config_password(tmp_path: Path, stdin: Stdin) -> None:
    conf = write(tmp_path / "vm.conf", "[config]\nuser = bob/x\nroot-password = y\n")
    stdin(f"{ALICE_PW}\n")
    s = parse("--config", str(conf), "--user", "alice/-")
    assert s.user == (f"alice/{ALICE_PW}",) and s.root_password == "y"
