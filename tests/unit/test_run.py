"""run.py: the one command runner, with real harmless commands (sh, env, cat).

Nothing here needs root or the network; every command finishes in well under
a second except the deliberate timeouts (at most 1 s).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from tests.fakes import RecordingRunner
from vmdebootstrap.errors import BuildError
from vmdebootstrap.host.run import (
    STOP_SIGNALS,
    TAIL_LINES,
    CommandError,
    CommandTimeout,
    Masker,
    Result,
    SubprocessRunner,
    base_env,
    format_tail,
    kill_group,
    signals_held,
)

SECRET = "Sekr1t-pa55word"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog that sees vmdebootstrap's records even after cli.setup_logging
    (run by other tests) turned propagation off."""
    logger = logging.getLogger("vmdebootstrap")
    old = logger.propagate
    logger.propagate = True
    caplog.set_level(logging.DEBUG, logger="vmdebootstrap")
    try:
        yield caplog
    finally:
        logger.propagate = old


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


# --- success and failure -----------------------------------------------------


def test_success_returns_result_with_output_tail() -> None:
    result = SubprocessRunner().run(sh("echo one; echo two >&2"))
    assert isinstance(result, Result)
    assert result.returncode == 0
    assert result.stdout == ""  # not captured: streamed to the log instead
    assert sorted(result.tail) == ["one", "two"]


def test_path_like_argv_is_accepted(tmp_path: Path) -> None:
    script = tmp_path / "ok.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o755)
    assert SubprocessRunner().run([script]).tail == ["ran"]


def test_failure_names_argv_status_and_last_lines() -> None:
    argv = sh("echo first; echo it-broke >&2; exit 3")
    with pytest.raises(CommandError) as info:
        SubprocessRunner().run(argv)
    err = info.value
    assert isinstance(err, BuildError)  # reaches the user as one clear message
    assert err.argv == argv
    assert err.returncode == 3
    assert err.tail == ["first", "it-broke"]
    msg = str(err)
    assert "command \"sh -c 'echo first; echo it-broke >&2; exit 3'\"" in msg
    assert "exited with status 3" in msg
    assert "last output:" in msg
    assert msg.endswith("\n    first\n    it-broke")


def test_failure_tail_keeps_only_the_last_lines() -> None:
    with pytest.raises(CommandError) as info:
        SubprocessRunner().run(sh("for i in $(seq -w 1 60); do echo line-$i; done; exit 1"))
    tail = info.value.tail
    assert len(tail) == TAIL_LINES
    assert tail[-1] == "line-60"
    assert tail[0] == f"line-{60 - TAIL_LINES + 1:02d}"
    assert "line-60" in str(info.value)
    assert "line-01" not in str(info.value)


def test_failure_without_output_has_no_tail_section() -> None:
    with pytest.raises(CommandError) as info:
        SubprocessRunner().run(["false"])
    assert str(info.value) == "command 'false' exited with status 1"


def test_what_prefixes_the_message() -> None:
    with pytest.raises(CommandError) as info:
        SubprocessRunner().run(sh("exit 2"), what="installing packages failed")
    assert str(info.value) == ("installing packages failed: command \"sh -c 'exit 2'\" "
                               "exited with status 2")


def test_format_tail_indents_each_line() -> None:
    assert format_tail(["a", "b"]) == "    a\n    b"
    assert format_tail(["x"], indent="  ") == "  x"
    assert format_tail([]) == ""
    err = CommandError(["false"], 1, ["one", "two"])
    assert str(err).endswith("last output:\n" + format_tail(["one", "two"]))


def test_killed_by_signal_is_reported_as_such() -> None:
    with pytest.raises(CommandError) as info:
        SubprocessRunner().run(sh("kill -9 $$"))
    assert info.value.returncode == -signal.SIGKILL
    assert "was killed by signal 9" in str(info.value)


def test_check_false_returns_the_failure() -> None:
    result = SubprocessRunner().run(sh("echo nope; exit 4"), check=False)
    assert result.returncode == 4
    assert result.tail == ["nope"]


def test_missing_program_raises_oserror() -> None:
    with pytest.raises(FileNotFoundError):
        SubprocessRunner().run(["/nonexistent/vmdebootstrap-no-such-tool"])


# --- capture, labels, cwd ------------------------------------------------------


def test_capture_returns_stdout_and_tails_stderr(logs: pytest.LogCaptureFixture) -> None:
    result = SubprocessRunner().run(sh("echo out-1; echo err-1 >&2; echo out-2"),
                                    capture=True)
    assert result.stdout == "out-1\nout-2\n"
    assert result.tail == ["err-1"]
    text = logged(logs)
    assert "err-1" in text
    assert "out-1" not in text.replace("echo out-1", "")  # stdout is data, not log


def test_capture_failure_tail_is_stderr() -> None:
    with pytest.raises(CommandError) as info:
        SubprocessRunner().run(sh("echo data; echo 'E: bad' >&2; exit 1"), capture=True)
    assert info.value.tail == ["E: bad"]


def test_output_lines_are_logged_with_the_label(logs: pytest.LogCaptureFixture) -> None:
    SubprocessRunner().run(sh("echo hello"), label="mmdebstrap")
    SubprocessRunner().run(["echo", "bye"])
    messages = [r.getMessage() for r in logs.records]
    assert "+ sh -c 'echo hello'" in messages
    assert "mmdebstrap: hello" in messages
    assert "echo: bye" in messages  # default label: the program's name


def test_cwd_is_honoured(tmp_path: Path) -> None:
    result = SubprocessRunner().run(["pwd"], cwd=tmp_path, capture=True)
    assert Path(result.stdout.strip()).resolve() == tmp_path.resolve()


def test_binary_garbage_does_not_break_the_reader() -> None:
    result = SubprocessRunner().run(sh(r"printf 'a\377b\n'"))
    assert result.tail == ["a\ufffdb"]


# --- stdin and secrets ---------------------------------------------------------


def test_stdin_is_closed_without_input() -> None:
    # cat would wait forever on a terminal; with stdin closed it ends at once.
    result = SubprocessRunner().run(["cat"], capture=True, timeout=10)
    assert result.stdout == ""


def test_input_is_fed_on_stdin_and_not_logged(logs: pytest.LogCaptureFixture) -> None:
    payload = f"root:{SECRET}\n".encode()
    result = SubprocessRunner().run(["cat"], input=payload, capture=True)
    assert result.stdout.encode() == payload
    assert "+ cat" in [r.getMessage() for r in logs.records]
    assert SECRET not in logged(logs)


def test_input_to_a_program_that_ignores_stdin() -> None:
    # The child exits without reading: a broken pipe must not become an error.
    big = b"x" * (1 << 20)
    assert SubprocessRunner().run(["true"], input=big).returncode == 0


def test_masker_masks_secrets_in_log_records(logs: pytest.LogCaptureFixture) -> None:
    masker = Masker()
    masker.add(SECRET)
    SubprocessRunner(masker).run(sh(f"echo the password is {SECRET}"), label="chpasswd")
    text = logged(logs)
    assert SECRET not in text
    assert "chpasswd: the password is ********" in text
    assert "+ sh -c 'echo the password is ********'" in text


def test_masker_masks_secrets_in_the_error_tail() -> None:
    masker = Masker()
    masker.add(SECRET)
    with pytest.raises(CommandError) as info:
        SubprocessRunner(masker).run(["sh", "-c", 'echo "bad: $(cat)"; exit 1'],
                                     input=SECRET.encode())
    assert info.value.tail == ["bad: ********"]
    assert SECRET not in str(info.value)


def test_masker_masks_secrets_in_the_error_argv() -> None:
    masker = Masker()
    masker.add(SECRET)
    with pytest.raises(CommandError) as info:
        SubprocessRunner(masker).run(sh(f"exit 1 # {SECRET}"))
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(("secret", "masked"), [
    ("live", False), ("12345", False), ("123456", True), (SECRET, True),
])
def test_masker_ignores_short_secrets(secret: str, masked: bool) -> None:
    masker = Masker()
    masker.add(secret)
    text = f"live-boot {secret} done"
    assert (masker(text) == "live-boot ******** done") is masked
    if not masked:
        assert masker(text) == text


def test_masker_masks_every_secret_and_every_occurrence() -> None:
    masker = Masker()
    masker.add("first-secret")
    masker.add("second-secret")
    assert masker("first-secret second-secret first-secret") == "******** ******** ********"


# --- environment ---------------------------------------------------------------

ALLOWED_ENV = {"PATH", "LC_ALL", "LANG", "HOME", "TERM", "TMPDIR", "http_proxy",
               "https_proxy", "no_proxy", "SOURCE_DATE_EPOCH"}


def child_env(runner: SubprocessRunner, **kwargs: object) -> dict[str, str]:
    out = runner.run(["env"], capture=True, **kwargs).stdout  # type: ignore[arg-type]
    return dict(line.split("=", 1) for line in out.splitlines())


def test_env_is_fixed_and_drops_caller_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("LANGUAGE", "de")
    monkeypatch.setenv("VMDEBOOTSTRAP_LEAK", "x")
    monkeypatch.setenv("DEBIAN_FRONTEND", "readline")
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    env = child_env(SubprocessRunner())
    assert env["LC_ALL"] == "C.UTF-8"
    assert env["LANG"] == "C.UTF-8"
    assert env["http_proxy"] == "http://proxy.example:3128"
    assert "/usr/sbin" in env["PATH"].split(":")
    assert set(env) <= ALLOWED_ENV, set(env) - ALLOWED_ENV


def test_env_extra_is_added() -> None:
    env = child_env(SubprocessRunner(), env={"DEBIAN_FRONTEND": "noninteractive"})
    assert env["DEBIAN_FRONTEND"] == "noninteractive"
    assert env["LC_ALL"] == "C.UTF-8"


def test_base_env_keeps_tmpdir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    env = base_env()
    assert env["TMPDIR"] == str(tmp_path)
    assert "SOURCE_DATE_EPOCH" not in env


# --- timeouts and process groups -------------------------------------------------


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper that may never come."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _wait_dead(pids: list[int], seconds: float = 5) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _wait_lines(path: Path, count: int, seconds: float = 10) -> None:
    """Until ``path`` holds ``count`` complete lines (a script's pids)."""
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text().count("\n") >= count):
        assert time.monotonic() < deadline, f"{path} never got {count} lines"
        time.sleep(0.02)


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    script = (f"sleep 100 & echo $! > {pids_file}; sleep 100 & echo $! >> {pids_file}; "
              "echo started; wait")
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as info:
        SubprocessRunner().run(sh(script), timeout=1.0)
    assert time.monotonic() - started < 20
    pids = [int(p) for p in pids_file.read_text().split()]
    assert len(pids) == 2
    assert _wait_dead(pids) == []
    err = info.value
    assert isinstance(err, CommandError)
    assert err.returncode == -signal.SIGKILL
    assert "timed out after 1 s" in str(err)
    assert "sleep 100 &" in str(err)
    assert err.tail == ["started"]


def test_timeout_keeps_what(tmp_path: Path) -> None:
    with pytest.raises(CommandTimeout) as info:
        SubprocessRunner().run(["sleep", "100"], timeout=0.3, what="the hook took too long")
    assert str(info.value).startswith("the hook took too long: command 'sleep 100'")


def test_no_timeout_when_fast_enough() -> None:
    assert SubprocessRunner().run(["true"], timeout=30).returncode == 0


# --- RecordingRunner ----------------------------------------------------


def test_recording_runner_records_and_answers(tmp_path: Path) -> None:
    runner = RecordingRunner({"dpkg-query": "bash\t5.2\n"})
    assert runner.run(["mount", "-t", "proc", "proc", tmp_path / "proc"]).returncode == 0
    result = runner.run(["/usr/bin/dpkg-query", "-W"], input=b"data", capture=True)
    assert result.stdout == "bash\t5.2\n"
    assert runner.calls == [["mount", "-t", "proc", "proc", str(tmp_path / "proc")],
                            ["/usr/bin/dpkg-query", "-W"]]
    assert runner.inputs == [None, b"data"]
    assert runner.commands()[1] == "/usr/bin/dpkg-query -W"


def test_kill_group_stops_the_group_and_reaps_the_leader(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    proc = subprocess.Popen(sh(f"sleep 100 & echo $! > {pids_file}; exec sleep 100"),
                            start_new_session=True)
    _wait_lines(pids_file, 1)
    kill_group(proc, grace=2)
    assert proc.returncode == -signal.SIGTERM
    assert _wait_dead([int(pids_file.read_text())]) == []
    kill_group(proc, grace=2)  # a group already gone is no error


def test_kill_group_sigkills_what_ignores_sigterm() -> None:
    proc = subprocess.Popen(sh("trap '' TERM; echo ready; while :; do sleep 0.05; done"),
                            stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    started = time.monotonic()
    kill_group(proc, grace=0.3)
    proc.stdout.close()
    assert proc.wait(5) == -signal.SIGKILL
    assert time.monotonic() - started < 5


# --- signals ---------------------------------------------------------------------


@pytest.fixture
def handlers() -> Iterator[dict[int, list[int]]]:
    """A recording handler for each stop signal, the old ones restored after."""
    seen: dict[int, list[int]] = {int(sig): [] for sig in STOP_SIGNALS}

    def record(signum: int, frame: FrameType | None) -> None:
        seen[signum].append(signum)

    saved = {sig: signal.signal(sig, record) for sig in STOP_SIGNALS}
    try:
        yield seen
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _deliver(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.01)  # Python runs handlers between bytecodes; give it some


def test_stop_signals_include_sighup() -> None:
    assert set(STOP_SIGNALS) == {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_signals_held_defers_each_stop_signal(handlers: dict[int, list[int]],
                                              sig: signal.Signals) -> None:
    with signals_held():
        _deliver(sig)
        assert handlers[sig] == []
    assert handlers[sig] == [sig]
    _deliver(sig)
    assert handlers[sig] == [sig, sig]  # the handler is back in place


def test_signals_held_raises_the_handlers_exception_at_the_end() -> None:
    class Hup(Exception):
        pass

    def raise_hup(signum: int, frame: FrameType | None) -> None:
        raise Hup

    old = signal.signal(signal.SIGHUP, raise_hup)
    done = []
    try:
        with pytest.raises(Hup), signals_held():
            _deliver(signal.SIGHUP)
            done.append("whole")
    finally:
        signal.signal(signal.SIGHUP, old)
    assert done == ["whole"]


def test_signals_held_leaves_an_ignored_signal_ignored() -> None:
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with signals_held():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            _deliver(signal.SIGHUP)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)


def test_signals_held_does_nothing_off_the_main_thread(handlers: dict[int, list[int]]) -> None:
    seen: list[object] = []

    def body() -> None:
        with signals_held():
            seen.append(signal.getsignal(signal.SIGHUP))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [signal.getsignal(signal.SIGHUP)]


def test_sighup_while_running_stops_the_child(tmp_path: Path) -> None:
    class Hup(Exception):
        pass

    def raise_hup(signum: int, frame: FrameType | None) -> None:
        raise Hup

    pids_file = tmp_path / "pids"
    script = f"sleep 100 & echo $! > {pids_file}; echo $$ >> {pids_file}; wait"
    old = signal.signal(signal.SIGHUP, raise_hup)

    def hang_up() -> None:
        _wait_lines(pids_file, 2)
        os.kill(os.getpid(), signal.SIGHUP)

    sender = threading.Thread(target=hang_up, daemon=True)
    try:
        sender.start()
        with pytest.raises(Hup):
            SubprocessRunner().run(sh(script), timeout=30)
    finally:
        sender.join(10)
        signal.signal(signal.SIGHUP, old)
    pids = [int(p) for p in pids_file.read_text().split()]
    assert len(pids) == 2
    assert _wait_dead(pids) == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): only a running process counts.
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("reap", [True, False])
def test_reap_stops_what_a_command_left_in_the_background(tmp_path: Path, reap: bool,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A hook's "sleep 600 >/dev/null &" holds no output, so only reaping
    its process group stops it."""
    pidfile = tmp_path / "pid"
    script = f"sleep 600 >/dev/null 2>&1 & echo $! > {pidfile}"
    started = time.monotonic()
    SubprocessRunner().run(sh(script), reap=reap, label="hook")
    pid = int(pidfile.read_text())
    try:
        assert time.monotonic() - started < 15
        assert _alive(pid) is not reap
        assert ("hook exited but left processes running; stopping them" in caplog.text) is reap
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
