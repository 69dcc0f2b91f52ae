"""The one command runner of the benchmark, and its temporary workspace.

Every command is logged with its argv, timed with a monotonic clock, and has
its output written to its own log file in the workspace.  The workspace is
removed at the end, also after a failure or Ctrl-C: processes left in it are
stopped and everything mounted below it is unmounted first.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap.host.resources import kill_processes_in, remove_tree, unmount_under
from vmdebootstrap.host.run import SubprocessRunner

GRACE_SECONDS = 300  # how long an interrupted child may take to clean up


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class Timing:
    label: str
    seconds: float
    returncode: int
    maxrss_kib: int  # peak RSS of the command and its reaped descendants (wait4)
    log: Path
    header: int = 0  # bytes of the "+ argv" line at the top of the log

    def output(self, lines: int = 100_000) -> list[str]:
        """The command's output (stdout and stderr), without the argv line."""
        return tail_of(self.log, lines, self.header)


class CommandFailed(Exception):
    def __init__(self, timing: Timing, tail: Sequence[str]) -> None:
        self.timing = timing
        self.tail = list(tail)
        last = headline(self.tail)
        super().__init__(f"{timing.label} exited with status {timing.returncode}"
                         + (f": {last}" if last else ""))


def headline(lines: Sequence[str]) -> str:
    """The line that best says why a command failed: the last error line
    (apt's and live-build's "E: ...", "...: error: ..."), else the last line."""
    text = [t.strip() for t in lines if t.strip()]
    errors = [t for t in text if t.startswith(("E:", "error:")) or ": error:" in t]
    return (errors or text or [""])[-1]


def tail_of(path: Path, lines: int = 20, skip: int = 0) -> list[str]:
    """The last lines of ``path`` after its first ``skip`` bytes."""
    try:
        with open(path, errors="replace") as fh:
            fh.seek(skip)
            return list(deque(fh, maxlen=lines))
    except OSError:
        return []


class Runner:
    """Runs a command in its own session with its output in ``logdir``."""

    def __init__(self, logdir: Path, env: Mapping[str, str]) -> None:
        self.logdir = logdir
        self.env = dict(env)
        self.count = 0

    def run(self, label: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
            cwd: Path | None = None, check: bool = True, quiet: bool = False,
            shown: Sequence[str] | None = None) -> Timing:
        """``shown``: the argv to print instead of ``argv`` (the log file
        always gets the real one)."""
        self.count += 1
        log = self.logdir / f"{self.count:02d}-{label}.log"
        command = shlex.join(argv)
        if not quiet:
            say(f"{label}: + {_short(shlex.join(shown) if shown else command)}")
        full_env = {**self.env, **(env or {})}
        with open(log, "w") as out:
            out.write(f"+ {command}\n")
            out.flush()
            header = out.tell()
            started = time.monotonic()
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                                    start_new_session=True)
            status, rusage = _wait(proc)
            seconds = time.monotonic() - started
        code = os.waitstatus_to_exitcode(status)
        timing = Timing(label, seconds, code, rusage.ru_maxrss, log, header)
        if not quiet:
            say(f"{label}: {seconds:.1f} s, exit status {code}")
        if check and code != 0:
            tail = timing.output(20)
            say(f"{label} failed; last lines of its output:\n  " + "  ".join(tail)
                + f"  (whole log: {log.name}; --keep-logs DIR keeps the logs)")
            raise CommandFailed(timing, tail)
        return timing

    def output(self, label: str, argv: Sequence[str], *, check: bool = True) -> str:
        """Run quietly and return the command's output (stdout and stderr)."""
        timing = self.run(label, argv, check=check, quiet=True)
        return "".join(timing.output())


def _short(command: str, limit: int = 400) -> str:
    return command if len(command) <= limit else command[:limit] + " ..."


def _wait(proc: subprocess.Popen[bytes]) -> tuple[int, resource.struct_rusage]:
    """wait4 the child; on Ctrl-C or SIGTERM, pass SIGINT on to its process
    group, give it time to clean up, then kill what is left."""
    try:
        _pid, status, rusage = os.wait4(proc.pid, 0)
    except BaseException:
        _stop(proc)
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return status, rusage


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    say(f"interrupted: waiting up to {GRACE_SECONDS} s for the command to clean up "
        "(interrupt again to kill it)")
    try:
        deadline = time.monotonic() + GRACE_SECONDS
        while time.monotonic() < deadline:
            if os.wait4(proc.pid, os.WNOHANG)[0]:
                proc.returncode = -1
                return
            time.sleep(0.2)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.wait4(proc.pid, 0)
            proc.returncode = -9


@contextlib.contextmanager
def workspace(parent: str | None = None, keep_logs: Path | None = None) -> Iterator[Path]:
    """A private temp dir for every build; removed at the end whatever happens."""
    path = Path(tempfile.mkdtemp(prefix="vmdeb-bench-", dir=parent))
    os.chmod(path, 0o755)
    for sub in ("logs", "tmp"):
        (path / sub).mkdir()
    say(f"workspace {path}")
    try:
        yield path
    finally:
        if keep_logs:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for f in sorted((path / "logs").iterdir()):
                shutil.copyfile(f, keep_logs / f.name)
            say(f"logs copied to {keep_logs}")
        drop(path)


def drop(path: Path) -> None:
    """Stop processes in ``path``, unmount everything below it, remove it."""
    if not path.exists():
        return
    kill_processes_in(path)
    left = unmount_under(path, SubprocessRunner())
    if left:
        say(f"NOT removing {path}: still mounted: {', '.join(left)}")
        return
    try:
        remove_tree(path)
    except Exception as exc:  # report and go on: the benchmark's results stand
        say(f"could not remove {path}: {exc}")


def file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def read_tree(root: Path) -> None:
    """Read every file once, so the first timed compressor does not pay for
    the disk reads the later ones get from the page cache."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            with contextlib.suppress(OSError), open(p, "rb") as fh:
                while fh.read(1 << 20):
                    pass
