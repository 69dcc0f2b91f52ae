"""Bad input refused early and clearly: each problem names the option and
says what to do, all are reported together (exit 2), nothing is written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.conftest import CliResult
from vmdebootstrap import cli
from vmdebootstrap.intent.options import OPTIONS, Kind, Option
from vmdebootstrap.plan import Host, Plan

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


# --- numbers, sizes and modes ------------------------------------------------------------

NUMBERS = [o for o in OPTIONS if o.kind in (Kind.INT, Kind.SIZE, Kind.MODE)]


@pytest.mark.parametrize("opt", NUMBERS, ids=lambda o: o.name)
@pytest.mark.parametrize("value", ["abc", "1.2.3", "", "0x10", "1_000", "٦٤"])
def test_every_number_says_what_it_expects(opt: Option, value: str,
                                           problems_of: Callable[..., list[str]],
                                           tmp_path: Path) -> None:
    what = {Kind.INT: "is not a whole number", Kind.SIZE: "is not a size",
            Kind.MODE: "is not an octal file mode"}[opt.kind]
    (problem,) = problems_of("--tarball", "r.tar", f"--{opt.name}={value}")
    assert problem.startswith(f"--{opt.name}: {value!r} {what}"), problem
    assert "invalid literal" not in problem and "base 10" not in problem
    conf = tmp_path / "vm.conf"
    conf.write_text(f"[config]\ntarball = r.tar\n{opt.name} = {value}\n")
    (problem,) = problems_of("--config", str(conf))
    assert problem.startswith(f"'{opt.name}' in {conf}: {value.strip()!r} {what}"), problem


def test_hook_timeout_in_words(run_cli: RunCli) -> None:
    assert errors(run_cli("--tarball", "r.tar", "--hook-timeout", "abc")) == [
        "--hook-timeout: 'abc' is not a whole number of seconds"]
    assert errors(run_cli("--tarball", "r.tar", "--hook-timeout=0")) == [
        "--hook-timeout: '0' must be a positive number of seconds (at least 1)"]
    assert errors(run_cli("--tarball", "r.tar", "--hook-timeout=-5")) == [
        "--hook-timeout: '-5' must be a positive number of seconds (at least 1)"]


@pytest.mark.parametrize("opt", [o for o in OPTIONS if o.kind is Kind.SIZE],
                         ids=lambda o: o.name)
def test_negative_sizes_refused(opt: Option, problems_of: Callable[..., list[str]]) -> None:
    (problem,) = problems_of("--tarball", "r.tar", f"--{opt.name}=-1G")
    assert problem == (f"--{opt.name}: '-1G' is negative: give a size such as 4G, 512M, "
                       "100MiB")


def test_no_swap_is_swap_0_as_in_1x(plan_of: Callable[..., Plan], out: Path) -> None:
    """1.x's --swap default was 0 (no swap): scripts pass it."""
    plan = plan_of("--image", str(out / "d.img"), "--size", "3G", "--swap", "0")
    assert plan.image is not None and plan.image.disk.swap is None


# --- config file syntax: the file and the line ---------------------------------------------


@pytest.mark.parametrize(("text", "problem"), [
    ("[config]\nfoo\n", "line 2: 'foo' is not a KEY = VALUE line"),
    ("[config]\nsudo = yes\nx\ny\n", "line 3: 'x' is not a KEY = VALUE line"),
    ("sudo = yes\n", "line 1: 'sudo = yes' comes before any section: start the file with a "
     "[config] line"),
    ("# vm\n[config\nsudo = yes\n", "line 2: '[config' is not a section header: write "
     "[config]"),
    ("[config]\nsudo = yes\nsudo = no\n", "line 3: 'sudo' is set a second time in [config]: "
     "set it once"),
    ("[config]\nsudo = yes\n[config]\nsize = 2G\n", "line 3: a second [config] section: put "
     "its keys in the first one"),
])
def test_config_syntax_errors_give_the_line(run_cli: RunCli, tmp_path: Path, text: str,
                                            problem: str) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text(text)
    found = errors(run_cli("--config", str(conf), "--tarball", "r.tar"))
    assert found[0] == f"--config: {conf} {problem}"


def test_every_bad_line_is_reported(run_cli: RunCli, tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("[config]\nsudo = yes\nx\ny\n")
    assert errors(run_cli("--config", str(conf), "--tarball", "r.tar")) == [
        f"--config: {conf} line 3: 'x' is not a KEY = VALUE line",
        f"--config: {conf} line 4: 'y' is not a KEY = VALUE line"]


def test_a_default_config_file_says_so(host: Host, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "home" / ".vmdebootstrap.conf"
    conf.parent.mkdir()
    conf.write_text("[config]\nsudo\n")
    assert cli.main(["--tarball", "r.tar", "--dry-run"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"vmdebootstrap: error: --config: {conf} line 2: 'sudo' is not a KEY = VALUE line "
        "(a default config file: --no-default-configs skips it)"]


def test_all_config_files_and_the_command_line_together(run_cli: RunCli,
                                                        tmp_path: Path) -> None:
    one, two = tmp_path / "one.conf", tmp_path / "two.conf"
    one.write_text("[config]\nfoo\n")
    two.write_text("[config]\nroottype = ext5\n")
    assert errors(run_cli("--config", str(one), "--config", str(two), "--tarball", "r.tar",
                          "--size", "12Q")) == [
        f"--config: {one} line 2: 'foo' is not a KEY = VALUE line",
        f"'roottype' in {two}: 'ext5' is not one of: ext2, ext3, ext4, btrfs, xfs; "
        "did you mean ext4?",
        "--size: '12Q' is not a size (use e.g. 4G, 512M, 100MiB)"]


# --- did you mean --------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "problem"), [
    (("--distribution", "bookwrm"), "--distribution 'bookwrm' is not a Debian release name "
     "or suite; did you mean bookworm?"),
    (("--distribution", "Stabel"), "--distribution 'Stabel' is not a Debian release name or "
     "suite; did you mean stable?"),
    (("--roottype", "ext5"), "--roottype: 'ext5' is not one of: ext2, ext3, ext4, btrfs, xfs; "
     "did you mean ext4?"),
    (("--bootstrap-tool", "cdebootstrap"), "--bootstrap-tool: 'cdebootstrap' is not one of: "
     "mmdebstrap, debootstrap; did you mean debootstrap?"),
    (("--arch", "amd46"), "--arch: unknown architecture 'amd46'; did you mean amd64?"),
    (("--debootstrapopts", "varient=minbase"), "--debootstrapopts: unknown option 'varient'; "
     "did you mean variant?"),
    (("--hostnme", "box"), "--hostnme: no such option; did you mean --hostname?"),
])
def test_a_misspelt_name_gets_the_close_one(run_cli: RunCli, argv: tuple[str, ...],
                                            problem: str) -> None:
    assert errors(run_cli("--tarball", "r.tar", *argv)) == [problem]


def test_names_are_listed_only_when_nothing_is_close(run_cli: RunCli) -> None:
    (problem,) = errors(run_cli("--tarball", "r.tar", "--distribution", "ubuntu"))
    assert problem.startswith("--distribution 'ubuntu' is not a Debian release name or "
                              "suite; valid names: stable, ")
    assert problem.endswith(", sid, experimental")  # all of them
    (problem,) = errors(run_cli("--tarball", "r.tar", "--roottype", "zfs"))
    assert problem == "--roottype: 'zfs' is not one of: ext2, ext3, ext4, btrfs, xfs"


def test_a_misspelt_config_key(run_cli: RunCli, tmp_path: Path) -> None:
    conf = tmp_path / "vm.conf"
    conf.write_text("[config]\ntarball = r.tar\nhostnme = box\nfrobnicate = 1\n"
                    "update_initramfs = no\n")
    assert errors(run_cli("--config", str(conf))) == [
        f"--config: {conf} line 3: unknown key 'hostnme'; did you mean hostname?",
        f"--config: {conf} line 4: unknown key 'frobnicate'"]


# --- the customisation hook --------------------------------------------------------------


def test_a_directory_given_as_the_hook(run_cli: RunCli, host: Host) -> None:
    hooks = host.cwd / "hooks"
    hooks.mkdir()
    (hooks / "live.sh").write_text("#!/bin/sh\n")
    (hooks / "live.sh").chmod(0o755)
    assert errors(run_cli("--tarball", "r.tar", "--customize", "hooks")) == [
        f"--customize: {hooks} is a directory; give the path of the hook script in it "
        "(e.g. hooks/live.sh)"]
    (hooks / "live.sh").unlink()
    assert errors(run_cli("--tarball", "r.tar", "--customize", str(hooks))) == [
        f"--customize: {hooks} is a directory; give the path of the hook script in it"]


def test_a_hook_neither_executable_nor_with_a_shebang(run_cli: RunCli, host: Host) -> None:
    hook = host.cwd / "hook.sh"
    hook.write_text("echo hi\n")
    assert errors(run_cli("--tarball", "r.tar", "--customize", "hook.sh")) == [
        f"--customize: {hook} is not executable and has no #! line: start it with one "
        f"(e.g. #!/bin/sh), then chmod +x {hook}"]
    hook.write_text("#!/bin/sh\necho hi\n")
    assert errors(run_cli("--tarball", "r.tar", "--customize", "hook.sh")) == [
        f"--customize: {hook} is not executable (chmod +x {hook})"]


def test_text_that_is_not_utf8_with_other_positionals(run_cli: RunCli) -> None:
    assert errors(run_cli("--tarball", "r.tar", "a", "\udcff")) == [
        f"unexpected argument 4 (not valid UTF-8 text): {NO_POSITIONALS}",
        f"unexpected argument 3 'a': {NO_POSITIONALS}"]


def test_verify_not_first(run_cli: RunCli) -> None:
    assert errors(run_cli("--verbose", "verify", "out.iso")) == [
        f"unexpected argument 2 'verify' (the verify subcommand comes first: vmdebootstrap "
        f"verify OUTPUT): {NO_POSITIONALS}",
        f"unexpected argument 3 'out.iso': {NO_POSITIONALS}"]
