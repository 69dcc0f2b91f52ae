"""The one way vmdebootstrap runs an external command.

Every command is logged with its argv, runs with a fixed locale and no
terminal input, has its output streamed to the log line by line, and on
failure raises CommandError carrying the argv, exit status and the tail of
its output.  Secrets never go on a command line: pass them as ``input``.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Protocol

from vmdebootstrap.errors import BuildError
from vmdebootstrap.host import progress

log = logging.getLogger("vmdebootstrap.host.run")

TAIL_LINES = 25
# How long output may stay open after a command exited: a process it left in
# the background that still holds its stdout is stopped after this.
LINGER_SECONDS = 5.0
# The signals that stop a build or a boot test: each has a handler that
# raises, so signals_held() defers them.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# A timeout beyond this (about 68 years; --hook-timeout takes any number)
# means none: larger ones overflow the float a wait needs.
MAX_TIMEOUT = 2**31


class CommandError(BuildError):
    def __init__(self, argv: Sequence[str], returncode: int, tail: Sequence[str],
                 what: str | None = None) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.tail = list(tail)
        cmd = shlex.join(self.argv)
        head = f"{what}: " if what else ""
        if returncode < 0:
            status = f"was killed by signal {-returncode}"
        else:
            status = f"exited with status {returncode}"
        msg = f"{head}command {cmd!r} {status}"
        if self.tail:
            msg += "\n  last output:\n" + format_tail(self.tail)
        super().__init__(msg)


def format_tail(lines: Iterable[str], indent: str = "    ") -> str:
    """The last lines of a command's output as they go in a message: one
    line each, indented below the heading that introduces them."""
    return "\n".join(indent + line for line in lines)


class CommandTimeout(CommandError):
    pass


@dataclass
class Result:
    returncode: int
    stdout: str = ""
    tail: list[str] = field(default_factory=list)


class Runner(Protocol):
    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        capture: bool = False,
        label: str | None = None,
        timeout: float | None = None,
        check: bool = True,
        what: str | None = None,
        reap: bool = False,
    ) -> Result: ...


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Run a short critical section whole: SIGINT, SIGTERM and SIGHUP that
    arrive in it are handled when it ends, by the handlers that were in place.

    Starting a child, creating a temp file and renaming an output into place
    must not be cut in half: an exception raised half-way through Popen
    leaves a child running that nobody stops, and one raised between
    creating a temp file and the try that removes it leaks the file.  The
    signals are not blocked, only their handlers' exceptions deferred, so a
    child never inherits a blocked SIGTERM; an ignored signal stays ignored
    (a child started under nohup keeps ignoring SIGHUP).  Only the main
    thread has signal handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    saved = {}
    for sig in STOP_SIGNALS:
        handler = signal.getsignal(sig)
        if handler is not None and handler != signal.SIG_IGN:
            saved[int(sig)] = signal.signal(sig, record)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        for signum in pending:
            handler = saved[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LC_ALL": "C.UTF-8",
        "LANG": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/root"),
        "TERM": os.environ.get("TERM", "dumb"),
    }
    # Honour the user's temp dir and proxy settings; drop everything else so
    # builds do not depend on the caller's shell.
    for key in ("TMPDIR", "http_proxy", "https_proxy", "no_proxy", "SOURCE_DATE_EPOCH"):
        if key in os.environ:
            env[key] = os.environ[key]
    if extra:
        env.update(extra)
    return env


class Masker:
    """Replaces known secrets in text that goes to the log.

    A second line of defence: secrets never go on a command line in the
    first place.  Very short secrets (a live image's "live") are not masked,
    as they would garble every log line that mentions live-boot.
    """

    MIN_LENGTH = 6

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, secret: str) -> None:
        if len(secret) >= self.MIN_LENGTH:
            self._secrets.add(secret)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "********")
        return text


class _Output:
    """The threads that read a child's output.  Each line of its stdout (its
    stderr when capturing) is masked, logged with ``label`` and kept in a
    tail of the last TAIL_LINES; a captured stdout is collected whole."""

    def __init__(self, mask: Callable[[str], str], label: str, capture: bool) -> None:
        self.mask = mask
        self.label = label
        self.capture = capture
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.chunks: list[bytes] = []
        self.threads: list[threading.Thread] = []

    def start(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        if self.capture:
            assert proc.stderr is not None
            self._add(self._collect, proc.stdout)
            self._add(self._stream, proc.stderr)
        else:
            self._add(self._stream, proc.stdout)
        for t in self.threads:
            t.start()

    def _add(self, target: Callable[[IO[bytes]], None], pipe: IO[bytes]) -> None:
        self.threads.append(threading.Thread(target=target, args=(pipe,), daemon=True))

    def _stream(self, pipe: IO[bytes]) -> None:
        for raw in _lines(pipe):
            line = self.mask(raw.decode("utf-8", "replace"))
            progress.STATUS.feed(line)
            if progress.is_progress_bar(line):
                continue
            self.tail.append(line)
            log.debug("%s: %s", self.label, line)

    def _collect(self, pipe: IO[bytes]) -> None:
        self.chunks.append(pipe.read())

    def join_each(self, seconds: float) -> None:
        for t in self.threads:
            t.join(seconds)

    def join_within(self, seconds: float) -> bool:
        """Wait at most ``seconds`` in all; True if every reader is done."""
        deadline = time.monotonic() + seconds
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)

    def lines(self) -> list[str]:
        return list(self.tail)

    def stdout(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace") if self.capture else ""


def _lines(pipe: IO[bytes]) -> Iterator[bytes]:
    """The lines of a child's output as they come, a carriage return ending
    one too: a progress bar redraws its line with them."""
    pending = b""
    while chunk := pipe.read1(65536):  # type: ignore[attr-defined]
        *done, pending = re.split(rb"\r\n|\r|\n", pending + chunk)
        yield from (line for line in done if line)
    if pending:
        yield pending


def _child_env(args: Sequence[str], env: Mapping[str, str] | None) -> dict[str, str]:
    return base_env(env)


def _spawn(args: Sequence[str], *, stdin: bool, capture: bool, env: Mapping[str, str],
           cwd: str | os.PathLike[str] | None) -> subprocess.Popen[bytes]:
    """Start the child in a session of its own (so its whole process group
    can be stopped); call it with signals held."""
    return subprocess.Popen(
        args,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if capture else subprocess.STDOUT,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )


def _feed(proc: subprocess.Popen[bytes], input: bytes | None) -> None:
    if input is None:
        return
    assert proc.stdin is not None
    try:
        proc.stdin.write(input)
        proc.stdin.close()
    except BrokenPipeError:
        pass


class SubprocessRunner:
    """Runs real commands.  The child gets its own process group so that a
    timeout or Ctrl-C can stop it together with everything it started."""

    def __init__(self, masker: Masker | None = None) -> None:
        self.mask = masker or Masker()

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        capture: bool = False,
        label: str | None = None,
        timeout: float | None = None,
        check: bool = True,
        what: str | None = None,
        reap: bool = False,
    ) -> Result:
        args = [os.fspath(a) for a in argv]
        label = label or Path(args[0]).name
        log.debug("+ %s", self.mask(shlex.join(args)))
        if timeout is not None and timeout >= MAX_TIMEOUT:
            timeout = None
        output = _Output(self.mask, label, capture)
        proc = self._start_and_wait(args, output, input=input, env=_child_env(args, env),
                                    cwd=cwd, timeout=timeout, what=what)
        self._stop_lingering(proc, output)
        if reap:
            _reap(proc, label)
        if check and proc.returncode != 0:
            raise CommandError(self._shown(args), proc.returncode, output.lines(), what)
        return Result(proc.returncode, output.stdout(), output.lines())

    def _shown(self, args: Sequence[str]) -> list[str]:
        return [self.mask(a) for a in args]

    def _start_and_wait(self, args: list[str], output: _Output, *, input: bytes | None,
                        env: Mapping[str, str], cwd: str | os.PathLike[str] | None,
                        timeout: float | None, what: str | None) -> subprocess.Popen[bytes]:
        """Start the child, read its output, feed its input and wait for it
        to exit; it never outlives a timeout or an exception here."""
        proc: subprocess.Popen[bytes] | None = None
        try:
            with signals_held():
                proc = _spawn(args, stdin=input is not None, capture=output.capture,
                              env=env, cwd=cwd)
            output.start(proc)
            _feed(proc, input)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            assert proc is not None
            kill_group(proc)
            output.join_each(5)
            raise CommandTimeout(self._shown(args), -signal.SIGKILL, output.lines(),
                                 what or f"timed out after {timeout:g} s") from None
        except BaseException:
            # Ctrl-C or SIGTERM in the parent, from the moment the child
            # exists: it is in its own session, so stop it here before
            # teardown starts unmounting and deleting under it.
            if proc is not None:
                kill_group(proc)
            raise
        return proc

    def _stop_lingering(self, proc: subprocess.Popen[bytes], output: _Output) -> None:
        if output.join_within(LINGER_SECONDS):
            return
        # Something it started in the background still holds its output
        # (a hook's "daemon &"): stop what is left of its process group.
        log.warning("%s exited but left processes running that hold its output; "
                    "stopping them", output.label)
        kill_group(proc)
        output.join_each(LINGER_SECONDS)


def _reap(proc: subprocess.Popen[bytes], label: str) -> None:
    """Stop what the command left running in its process group (a hook's
    "daemon >/dev/null &", which holds no output for the linger check to see,
    and which may not have entered the root yet when the clean-up looks)."""
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return
    log.warning("%s exited but left processes running; stopping them", label)
    kill_group(proc)


def kill_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM to the child's process group, SIGKILL to what is left after
    ``grace`` seconds; returns when the whole group is gone (a tool such as
    mmdebstrap unmounts what it mounted when it gets SIGTERM), or ``grace``
    seconds after the SIGKILL.  The child must have been started in a
    session of its own."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            proc.poll()
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader, so that only live members count
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
