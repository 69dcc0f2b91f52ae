"""Bad input never gets a traceback: hypothesis over every option and config key.

Malformed sizes, paths with spaces and newlines, unknown keys, huge values
and control characters, on the command line and in config files: cli.main
either accepts them (exit 0: a dry run) or refuses with exit 2 and one
"vmdebootstrap: error:" line per problem.  No root, no network, nothing
built: every run is a --dry-run on the fake host, and the real build is
replaced by one that fails the test.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.conftest import CliResult
from vmdebootstrap import build as build_module
from vmdebootstrap import cli
from vmdebootstrap.host.run import SubprocessRunner
from vmdebootstrap.intent.options import OPTIONS, Kind

RunCli = Callable[..., CliResult]
PREFIX = "vmdebootstrap: error: "
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# Values that have broken option parsers before, per kind of option.
SIZES = ["12Q", "-1G", "1e9", "0", "0.5", "1.5.3M", "99999999999999999999999999T",
         "4 G", "4GiB", "4gb", " ", "", "G", "NaN", "inf", "1_000", "٣G", "4G\n"]
PATHS = ["root.tar", "out dir/root.tar", "a\nb.tar", "/", "/dev/null", "..",
         "~nosuchuser/x.tar", "~/x.tar", "-", " ", "x" * 5000, "/proc/self/mem",
         "dir/", "tab\there.tar", "ctl\x01\x7f.tar", "nul\x00.tar", "é ü.tar.gz"]
WORDS = ["yes", "no", "", "main", "bookworm", "stable", "amd64", "variant=minbase",
         "components=main,contrib", "variant", "=", "--", "-x", "a,b,,c",
         "http://mirror.example/debian", "file:///srv/mirror", "ftp://x", "http://",
         "user/", "/pass", "a/b/c", "zstd:99", "xz:1", "gzip:-1", "9" * 400, "-1",
         "root", "builder", "\x1b[31mred", "\u202etxt", "\udcff", "none"]
TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
ODD = st.text(st.characters(blacklist_categories=("Cs",), max_codepoint=0x2FFF),
              max_size=12)
VALUES = st.one_of(st.sampled_from(SIZES + PATHS + WORDS), TEXT, ODD,
                   st.integers(-10**30, 10**30).map(str))

TEXT_OPTIONS = [o for o in OPTIONS if o.kind is not Kind.BOOL]
BOOL_OPTIONS = [o for o in OPTIONS if o.kind is Kind.BOOL]
CONFIG_KEYS = [o.name for o in OPTIONS] + [o.dest for o in OPTIONS] + [
    "no-such-key", "Tarball", "", "config", "dump-config", "x y"]


@pytest.fixture
def safe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing can build: not root, and the build itself fails the test."""
    def no_build(plan: object, runner: object) -> None:
        pytest.fail("a dry run started a build")

    monkeypatch.setattr(build_module, "build", no_build)
    monkeypatch.setattr(cli, "_install_signal_handlers", lambda: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)


def control_characters(text: str) -> list[str]:
    return [c for c in text if c != "\n" and not c.isprintable()]


def check(result: CliResult, raw_output: bool = False) -> None:
    """Exit 0 or 2 with one error line per problem; no control character
    the user typed reaches the terminal (--dump-config prints values as
    they are, to be read back: ``raw_output``)."""
    assert "Traceback" not in result.out + result.err
    assert not control_characters(result.err), result.err
    if not raw_output:
        assert not control_characters(result.out), result.out
    assert result.code in (0, 2), (result.code, result.err)
    if result.code == 2:
        lines = result.err.splitlines()
        assert lines, "exit 2 without a message"
        assert all(line.startswith(PREFIX) for line in lines), result.err
    else:
        assert "dry run" in result.out or result.out.startswith("[config]"), result.out


def option_args(opt: object, value: str) -> list[str]:
    assert hasattr(opt, "name")
    return [f"--{opt.name}={value}"]


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    argv: list[str] = []
    for opt in draw(st.lists(st.sampled_from(TEXT_OPTIONS), max_size=5)):
        value = draw(VALUES)
        # Both spellings: --name=value, and --name value (which argparse
        # reads differently when the value starts with "-").
        if draw(st.booleans()):
            argv.append(f"--{opt.name}={value}")
        else:
            argv += [f"--{opt.name}", value]
    for opt in draw(st.lists(st.sampled_from(BOOL_OPTIONS), max_size=4)):
        negate = opt.negatable and not opt.name.startswith("no-") and draw(st.booleans())
        argv.append(f"--no-{opt.name}" if negate else f"--{opt.name}")
    if draw(st.booleans()):
        argv += ["--tarball", "root.tar"]
    return argv


@FUZZ
@given(command_lines())
def test_any_command_line(run_cli: RunCli, safe: None, argv: list[str]) -> None:
    check(run_cli(*argv, "--dry-run"))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(CONFIG_KEYS), VALUES), max_size=6),
       st.sampled_from(["plain", "section", "no-section", "duplicate", "binary"]))
def test_any_config_file(run_cli: RunCli, safe: None, tmp_path: Path,
                         pairs: list[tuple[str, str]], shape: str) -> None:
    lines = [] if shape == "no-section" else ["[config]"]
    lines += [f"{key} = {value}" for key, value in pairs]
    if shape == "section":
        lines += ["[other]", "x = 1"]
    if shape == "duplicate" and pairs:
        lines.append(f"{pairs[0][0]} = {pairs[0][1]}")
    path = tmp_path / "fuzz.conf"
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    if shape == "binary":
        data += b"\xff\xfe\x00"
    path.write_bytes(data)
    check(run_cli("--config", str(path), "--tarball", "root.tar", "--dry-run"))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(TEXT_OPTIONS), VALUES), min_size=1, max_size=4))
def test_dump_config_of_anything(run_cli: RunCli, safe: None,
                                 pairs: list[tuple[object, str]]) -> None:
    argv = [a for opt, value in pairs for a in option_args(opt, value)]
    check(run_cli(*argv, "--dump-config"), raw_output=True)


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(["-", "\n", "\r\n", "\0", "\udcff", "é"]), TEXT),
                max_size=6).map("".join),
       st.lists(st.sampled_from([("--user", "alice/-"), ("--user", "bob/-"),
                                 ("--user", "carol/x"), ("--root-password", "-"),
                                 ("--root-password", "given"), ("--lock-root-password",),
                                 ("--dump-config",)]), min_size=1, max_size=5))
def test_any_standard_input_for_dash_passwords(run_cli: RunCli, safe: None,
                                                monkeypatch: pytest.MonkeyPatch, text: str,
                                                options: list[tuple[str, ...]]) -> None:
    """--user NAME/- and --root-password - with anything on standard input:
    exit 0 or 2, and no line read ever shows (the masker hides lines of 6
    characters or more)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    argv = [a for option in options for a in option]
    result = run_cli("--tarball", "root.tar", *argv, "--dry-run")
    check(result, raw_output="--dump-config" in argv)
    for line in text.split("\n"):
        if len(line) >= 6 and line.isprintable() and line.strip() == line:
            assert line not in result.out + result.err


@pytest.mark.parametrize("argv", [
    ("--size", "99999999999999999999999999T", "--image", "d.img"),
    ("--tarball", "a\nb.tar"),
    ("--tarball", "nul\x00.tar"),
    ("--customize", "~nosuchuser/hook.sh"),
    ("--cache-dir", "relative/cache"),
    ("--squash-compression", "zstd:99"),
    ("--debootstrapopts", "variant"),
    ("--user", "\udcff/pw"),
])
def test_known_bad_values_exit_2(run_cli: RunCli, safe: None, argv: tuple[str, ...]) -> None:
    result = run_cli("--tarball", "root.tar", *argv, "--dry-run")
    check(result)
    assert result.code == 2


def test_control_characters_in_a_dry_run_are_escaped(run_cli: RunCli, safe: None) -> None:
    result = run_cli("--tarball", "root.tar", "--mirror", "http://x\x1b[2J/debian",
                     "--dry-run")
    check(result)


@pytest.mark.parametrize("value", ["9" * 400, str(2**63), "1"])
def test_any_hook_timeout_that_is_accepted_can_be_used(run_cli: RunCli, safe: None,
                                                       value: str) -> None:
    """A huge --hook-timeout passes the checks; the runner then treats it as
    no timeout instead of failing mid-build on a float overflow."""
    check(run_cli("--tarball", "root.tar", "--hook-timeout", value, "--dry-run"))
    assert SubprocessRunner().run(["true"], timeout=int(value)).returncode == 0


# --- diagnose.explain: any failure gives one clear line, or is left alone ------------------

TAIL_LINES = st.lists(st.one_of(
    st.sampled_from([
        "E: Failed to fetch http://127.0.0.1:9/debian/dists/bookworm/InRelease  "
        "Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)",
        "E: The repository 'http://mirror.example/debian wheezy Release' does not have a "
        "Release file.",
        "  404  Not Found [IP: 192.0.2.1 80]",
        "W: GPG error: file:/srv/m bookworm InRelease: The following signatures were "
        "invalid: BADSIG 6ED0E7B82643E131 Debian Archive Automatic Signing Key",
        "E: The repository 'file:/srv/m bookworm Release' is not signed.",
        "tar: /srv/out/.root.tar.x1.part: Wrote only 6144 of 10240 bytes",
        "dpkg: error: failed to write (No space left on device)",
        "E: mmdebstrap failed to run",
    ]),
    TEXT), max_size=8)


@st.composite
def failures(draw: st.DrawFn) -> BaseException:
    from vmdebootstrap.errors import BuildError
    from vmdebootstrap.host.run import CommandError

    tool = draw(st.sampled_from(["mmdebstrap", "debootstrap", "tar", "/srv/hook.sh",
                                 "chroot", "mksquashfs"]))
    argv = [tool, *draw(st.lists(st.sampled_from(["/srv/out/root.tar", "--x", "apt-get",
                                                  "/tmp/w/root"]), max_size=3))]
    kind = draw(st.sampled_from(["command", "oserror", "build", "wrapped"]))
    if kind == "oserror":
        import errno as errno_module

        code = draw(st.sampled_from([errno_module.ENOSPC, errno_module.EACCES,
                                     errno_module.EROFS, errno_module.EISDIR,
                                     errno_module.ENOENT]))
        return OSError(code, os.strerror(code), draw(st.sampled_from(
            ["/srv/out/root.tar", "/srv/out/.root.tar.x.part", "/tmp/w/root/etc/x",
             "relative"])))
    error = CommandError(argv, draw(st.integers(-9, 255)), draw(TAIL_LINES))
    if kind == "command":
        return error
    wrapper = BuildError(draw(TEXT) or "failed")
    if kind == "wrapped":
        wrapper.__cause__ = error
    return wrapper


@FUZZ
@given(failures())
def test_explain_gives_one_line_or_nothing(exc: BaseException) -> None:
    from vmdebootstrap.diagnose import explain

    clear = explain(exc, Path("/tmp"))
    if clear is not None:
        text = str(clear)
        assert text and "\n" not in text
        assert clear.__cause__ is exc  # the original stays for the log


def explained(exc: BaseException, **plan_values: object) -> str:
    from types import SimpleNamespace

    from vmdebootstrap.diagnose import explain
    from vmdebootstrap.intent.plan import Targets
    from vmdebootstrap.intent.settings import Settings

    s = Settings(**plan_values)  # type: ignore[arg-type]
    kind = s.outputs[0].lstrip("-") if s.outputs else "tarball"
    targets = Targets(kind=kind, path=Path(getattr(s, kind) or "/srv/out/root.tar"),
                      squash_dir=Path(s.squash) if kind == "iso" and s.squash else None)
    plan = SimpleNamespace(settings=s, mirror="http://mirror.example/debian",
                           distribution="bookworm", variant="minbase", bootstrap_opts=(),
                           kernel_package=None, output=kind, targets=targets,
                           check_signatures=not (s.no_check_gpg
                                                 or "no-check-gpg" in s.debootstrapopts),
                           cache_dir=None if s.no_cache else Path(s.cache_dir or "/c"),
                           log_file=Path(s.log) if s.log else None)
    clear = explain(exc, Path("/scratch/tmp"), plan)  # type: ignore[arg-type]
    assert clear is not None, exc
    return str(clear)


def mmdebstrap_failed(*tail: str) -> BaseException:
    from vmdebootstrap.host.run import CommandError

    return CommandError(["mmdebstrap", "--mode=root", "bookworm", "/w/root",
                         "http://mirror.example/debian"], 25, list(tail))


@pytest.mark.parametrize(("exc", "says"), [
    (mmdebstrap_failed("Err:1 http://mirror.example/debian bookworm InRelease",
                       "  Could not resolve 'mirror.example'"),
     "cannot reach the mirror http://mirror.example/debian: check --mirror and the network"),
    (mmdebstrap_failed("E: The repository 'http://mirror.example/debian bookworm Release' "
                       "does not have a Release file."),
     "the mirror http://mirror.example/debian has no suite bookworm: check --distribution"),
    (mmdebstrap_failed("W: GPG error: http://mirror.example/debian bookworm InRelease: The "
                       "following signatures couldn't be verified: NO_PUBKEY 0E98404D386FA1D9"),
     "the mirror's Release signature does not verify: refusing to continue"),
    (mmdebstrap_failed("E: Failed to fetch http://mirror.example/debian/pool/x.deb  Write "
                       "error - write (28: No space left on device)"),
     "ran out of disk space in /scratch/tmp (TMPDIR, the build's work area): free space, "
     "or set TMPDIR to a bigger filesystem (the build needs about 1 GiB)"),
])
def test_explain_known_failures(exc: BaseException, says: str) -> None:
    assert explained(exc, tarball="/srv/out/root.tar").startswith(says)


def test_explain_full_output_directory() -> None:
    from vmdebootstrap.host.run import CommandError

    exc = CommandError(["tar", "--create", "--file", "/srv/out/.root.tar.x.part"], 2,
                       ["tar: /srv/out/.root.tar.x.part: Wrote only 6144 of 10240 bytes"])
    text = explained(exc, tarball="/srv/out/root.tar")
    assert text.startswith("ran out of disk space in /srv/out, where the --tarball output "
                           "root.tar is written")


@pytest.mark.parametrize(("code", "says"), [
    (13, "--tarball: cannot write in /srv/out: Permission denied"),
    (30, "--tarball: cannot write in /srv/out: Read-only file system"),
])
def test_explain_output_not_writable(code: int, says: str) -> None:
    exc = OSError(code, os.strerror(code), "/srv/out/.root.tar.x.part")
    assert explained(exc, tarball="/srv/out/root.tar").startswith(says)


def test_explain_no_signature_error_when_checks_are_off() -> None:
    exc = mmdebstrap_failed("W: The repository 'file:/srv/m bookworm InRelease' is not "
                            "signed.", "E: Failed to fetch file:/srv/m/dists/bookworm/main/"
                            "binary-amd64/Packages  File not found")
    text = explained(exc, tarball="/srv/out/root.tar", no_check_gpg=True)
    assert "signature" not in text and text.startswith("cannot reach the mirror")


def test_explain_leaves_hook_and_unknown_failures_alone() -> None:
    from vmdebootstrap.diagnose import explain
    from vmdebootstrap.errors import BuildError, Interrupted
    from vmdebootstrap.host.run import CommandError

    hook = CommandError(["/srv/hook.sh", "/w/root"], 1, ["E: Failed to fetch http://x/y"])
    assert explain(hook, None) is None  # the hook's own mirror, not the build's
    assert explain(BuildError("mksquashfs wrote only 12 bytes"), None) is None
    assert explain(Interrupted("interrupted by SIGINT"), None) is None


def test_fault_seam_is_inert_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmdebootstrap.errors import BuildError
    from vmdebootstrap.host import faults

    monkeypatch.delenv(faults.FAULT_ENV, raising=False)
    faults.checkpoint("configure")
    monkeypatch.setenv(faults.FAULT_ENV, "hook:pause, configure:fail")
    assert faults.faults() == {"hook": "pause", "configure": "fail"}
    faults.checkpoint("bootstrap")
    with pytest.raises(BuildError, match="failing at configure"):
        faults.checkpoint("configure")
