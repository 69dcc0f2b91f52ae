"""The console a person watches: step lines with times, a status line only
on a terminal, progress read from apt's, dpkg's and mksquashfs's output."""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Iterator

import pytest

from vmdebootstrap.host import logs, progress
from vmdebootstrap.host.run import Masker, _lines
from vmdebootstrap.intent.settings import Settings

log = logging.getLogger("vmdebootstrap")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def status() -> Iterator[progress.StatusLine]:
    """A fresh status line in place of the process's one."""
    saved = progress.STATUS
    progress.STATUS = progress.StatusLine()
    try:
        yield progress.STATUS
    finally:
        progress.STATUS._stop.set()
        progress.STATUS = saved


@pytest.mark.parametrize(("seconds", "text"), [
    (0.4, "0 s"), (26.6, "27 s"), (60, "1 min 00 s"), (192, "3 min 12 s"),
    (3725, "1 h 02 min"),
])
def test_duration(seconds: float, text: str) -> None:
    assert progress.duration(seconds) == text


def test_size() -> None:
    assert progress.size(512) == "512 bytes"
    assert progress.size(412 * 2**20) == "412.0 MiB"
    assert progress.size(3 * 2**30 // 2) == "1.5 GiB"


# What mmdebstrap --verbose prints, shortened: two apt runs (the essential
# set, then the rest inside the chroot), index and package downloads.
MMDEBSTRAP = """\
I: downloading packages with apt...
Get:1 http://mirror.invalid/debian bookworm InRelease [151 kB]
Get:2 http://mirror.invalid/debian bookworm/main amd64 Packages [8790 kB]
0 upgraded, 2 newly installed, 0 to remove and 0 not upgraded.
Get:1 http://mirror.invalid/debian bookworm/main amd64 gcc-12-base amd64 12.2.0-14 [37.6 kB]
Get:2 http://mirror.invalid/debian bookworm/main amd64 libc6 amd64 2.36-9 [2757 kB]
I: extracting archives...
Unpacking gcc-12-base:amd64 (12.2.0-14) ...
Unpacking libc6:amd64 (2.36-9) ...
Setting up gcc-12-base:amd64 (12.2.0-14) ...
I: installing remaining packages inside the chroot...
0 upgraded, 1 newly installed, 0 to remove and 0 not upgraded.
Unpacking less (590-2) ...
Setting up libc6:amd64 (2.36-9) ...
Setting up less (590-2) ...
"""


def test_apt_counter_counts_packages_not_indexes() -> None:
    count = progress.AptCounter()
    shown = [d for line in MMDEBSTRAP.splitlines() if (d := count(line)) is not None]
    assert shown[0] == "downloading packages with apt"
    assert shown[-1] == "3/3 unpacked, 3/3 set up"
    assert "2/2 packages downloaded" in shown
    assert count("Reading package lists...") is None


def test_apt_counter_reads_debootstrap() -> None:
    count = progress.AptCounter()
    assert count("I: Retrieving libc6 2.36-9") == "retrieving libc6"
    assert count("I: Configuring base-files...") == "configuring base-files..."


def test_squash_percentage() -> None:
    bar = "[=====-          ] 5800/54947  10%"
    assert progress.squash_percentage(bar) == "mksquashfs 10% (5800/54947 blocks)"
    assert progress.output_progress(bar) == "mksquashfs 10% (5800/54947 blocks)"
    assert progress.output_progress("xorriso : UPDATE :  25.44% done, estimate finish "
                                    "Wed Dec 02 15:20:01 2026") == "xorriso 25%"
    assert progress.is_progress_bar(bar)
    assert progress.squash_percentage("Creating 4.0 filesystem on o.sq") is None
    assert not progress.is_progress_bar("Exportable Squashfs 4.0 filesystem")


def test_lines_split_at_carriage_returns() -> None:
    read, write = os.pipe()
    with os.fdopen(write, "wb") as w:
        w.write(b"first\n\r[=  ] 1/4  25%\r[== ] 2/4  50%\r\nlast without newline")
    with os.fdopen(read, "rb") as r:
        assert list(_lines(r)) == [b"first", b"[=  ] 1/4  25%", b"[== ] 2/4  50%",
                                   b"last without newline"]


def test_status_line_drawn_on_a_terminal_only(status: progress.StatusLine) -> None:
    pipe = io.StringIO()
    status.attach(pipe)
    with progress.step("Bootstrapping"):
        progress.detail("3/9 unpacked, 1/9 set up")
    assert pipe.getvalue() == ""

    tty = Terminal()
    status.attach(tty)
    with progress.step("Bootstrapping"):
        progress.detail("3/9 unpacked, 1/9 set up")
        assert status.text().startswith("Bootstrapping [0 s] 3/9 unpacked")
    shown = tty.getvalue()
    assert "\r\x1b[KBootstrapping [0 s] 3/9 unpacked, 1/9 set up" in shown
    assert shown.endswith("\r\x1b[K"), "the line is wiped when the step ends"


def test_reader_feeds_detail_while_reading(status: progress.StatusLine) -> None:
    status.attach(Terminal())
    with progress.step("Squashing"):
        with progress.reading(progress.squash_percentage):
            status.feed("[==    ] 20/40  50%")
            assert status.detail == "mksquashfs 50% (20/40 blocks)"
        status.feed("[===   ] 30/40  75%")
        assert status.detail == "mksquashfs 50% (20/40 blocks)", "no reader: no detail"


def test_step_logs_its_time_or_nothing_when_it_fails(
        status: progress.StatusLine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="vmdebootstrap")
    with progress.step("Configuring the system"):
        pass
    with pytest.raises(RuntimeError), progress.step("Running the hook"):
        raise RuntimeError("hook failed")
    steps = [r.getMessage() for r in caplog.records if r.levelno == progress.STEP]
    assert steps == ["Configuring the system: 0 s"]
    assert not status.titles


def _console(verbose: bool, tmp_path: object, monkeypatch: pytest.MonkeyPatch
             ) -> tuple[Terminal, io.StringIO]:
    out, err = Terminal(), io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    logs.setup_logging(Settings(verbose=verbose), Masker(), to_file=False)
    return out, err


def test_console_shows_steps_and_each_warning_once(
        status: progress.StatusLine, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    out, err = _console(False, tmp_path, monkeypatch)
    try:
        logs.log_header("2.0.0", ["--squash", "x"], "[config]\nsquash = x")
        with progress.step("Configuring the system"):
            log.info("a detail")
            log.warning("a warning")
        shown = out.getvalue()
        assert "Configuring the system: 0 s\n" in shown
        assert "a detail" not in shown and "a warning" not in shown
        assert "command line" not in shown + err.getvalue(), "the header is for the log file"
        assert err.getvalue() == "a warning\n"
        # The status line was wiped before the step line was printed.
        assert shown.index("\r\x1b[K") < shown.index("Configuring the system: 0 s")
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)


def test_verbose_console_shows_details(
        status: progress.StatusLine, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    out, _err = _console(True, tmp_path, monkeypatch)
    try:
        log.info("a detail")
        assert "a detail\n" in out.getvalue()
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)


def test_status_is_thread_safe(status: progress.StatusLine) -> None:
    tty = Terminal()
    status.attach(tty)
    with progress.step("Boot test"):
        threads = [threading.Thread(target=lambda n=n: [progress.detail(f"{n}-{i}")
                                                        for i in range(200)]) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert tty.getvalue().count("\r\x1b[K") >= 800
