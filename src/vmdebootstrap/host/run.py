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
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Protocol

from vmdebootstrap.errors import BuildError

log = logging.getLogger("vmdebootstrap.host.run")

TAIL_LINES = 25
# How long output may stay open after a command exited: a process it left in
# the background that still holds its stdout is stopped after this.
LINGER_SECONDS = 5.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
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
            msg += "\n  last output:\n" + "\n".join("    " + line for line in self.tail)
        super().__init__(msg)


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
    ) -> Result: ...


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Run a short critical section whole: SIGINT and SIGTERM that arrive in
    it are handled when it ends, by the handlers that were in place.

    Starting a child, creating a temp file and renaming an output into place
    must not be cut in half: an exception raised half-way through Popen
    leaves a child running that nobody stops, and one raised between
    creating a temp file and the try that removes it leaks the file.  The
    signals are not blocked, only their handlers' exceptions deferred, so a
    child never inherits a blocked SIGTERM.  Only the main thread has signal
    handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    saved = {int(sig): signal.signal(sig, record) for sig in STOP_SIGNALS}
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
    ) -> Result:
        args = [os.fspath(a) for a in argv]
        label = label or Path(args[0]).name
        log.debug("+ %s", self.mask(shlex.join(args)))
        if timeout is not None and timeout >= MAX_TIMEOUT:
            timeout = None
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        child_env = base_env(env)
        if Path(args[0]).name == "chroot" and not (env and "TMPDIR" in env):
            # The host's TMPDIR does not exist inside the root: mktemp in
            # mkinitramfs and friends would fail there.
            child_env.pop("TMPDIR", None)
        chunks: list[bytes] = []
        readers: list[threading.Thread] = []

        def stream(pipe: IO[bytes]) -> None:
            for raw in iter(pipe.readline, b""):
                line = self.mask(raw.decode("utf-8", "replace").rstrip("\n"))
                tail.append(line)
                log.debug("%s: %s", label, line)

        def collect(pipe: IO[bytes]) -> None:
            chunks.append(pipe.read())

        proc: subprocess.Popen[bytes] | None = None
        try:
            with signals_held():
                proc = subprocess.Popen(
                    args,
                    stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE if capture else subprocess.STDOUT,
                    env=child_env,
                    cwd=cwd,
                    start_new_session=True,
                )
            assert proc.stdout is not None
            if capture:
                assert proc.stderr is not None
                readers.append(threading.Thread(target=collect, args=(proc.stdout,),
                                                daemon=True))
                readers.append(threading.Thread(target=stream, args=(proc.stderr,),
                                                daemon=True))
            else:
                readers.append(threading.Thread(target=stream, args=(proc.stdout,),
                                                daemon=True))
            for t in readers:
                t.start()
            if input is not None:
                assert proc.stdin is not None
                try:
                    proc.stdin.write(input)
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            assert proc is not None
            _kill_group(proc)
            for t in readers:
                t.join(5)
            raise CommandTimeout([self.mask(a) for a in args], -signal.SIGKILL, list(tail),
                                 what or f"timed out after {timeout:g} s") from None
        except BaseException:
            # Ctrl-C or SIGTERM in the parent, from the moment the child
            # exists: it is in its own session, so stop it here before
            # teardown starts unmounting and deleting under it.
            if proc is not None:
                _kill_group(proc)
            raise
        deadline = time.monotonic() + LINGER_SECONDS
        for t in readers:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in readers):
            # Something it started in the background still holds its output
            # (a hook's "daemon &"): stop what is left of its process group.
            log.warning("%s exited but left processes running that hold its output; "
                        "stopping them", label)
            _kill_group(proc)
            for t in readers:
                t.join(LINGER_SECONDS)
        stdout = b"".join(chunks).decode("utf-8", "replace") if capture else ""
        if check and returncode != 0:
            raise CommandError([self.mask(a) for a in args], returncode, list(tail), what)
        return Result(returncode, stdout, list(tail))


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM to the child's process group, SIGKILL to what is left after
    ``grace`` seconds; returns when the whole group is gone (a tool such as
    mmdebstrap unmounts what it mounted when it gets SIGTERM)."""
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


class RecordingRunner:
    """Records argv instead of running anything; for unit tests and dry runs.

    ``responses`` maps the first word of a command to the stdout it returns.
    """

    def __init__(self, responses: Mapping[str, str] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.inputs: list[bytes | None] = []
        self.responses = dict(responses or {})

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
    ) -> Result:
        args = [os.fspath(a) for a in argv]
        self.calls.append(args)
        self.inputs.append(input)
        return Result(0, self.responses.get(Path(args[0]).name, ""))

    def commands(self) -> list[str]:
        return [shlex.join(c) for c in self.calls]


def which(names: Iterable[str]) -> list[str]:
    """Return the names among ``names`` that are not on PATH."""
    import shutil

    path = base_env()["PATH"]
    return [n for n in names if shutil.which(n, path=path) is None]
