"""Integration tests: real builds as root against the host's Debian mirror.

Every test here checks that the host is left as it was: no new mount, loop
device or vmdebootstrap temp dir after the test, pass or fail.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vmdebootstrap.host.apt_sources import default_mirror

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "src/vmdebootstrap/examples"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="integration tests need root"))


def host_state() -> dict[str, set[str]]:
    mounts = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mounts.add(line.split()[4])
    loops = subprocess.run(["losetup", "-a", "-n", "-O", "NAME,BACK-FILE"],
                           capture_output=True, text=True, check=False).stdout
    tmp = Path(tempfile.gettempdir())
    temps = {p.name for p in tmp.glob("vmdebootstrap-*")}
    return {"mounts": mounts, "loops": set(loops.splitlines()), "tempdirs": temps}


@pytest.fixture(autouse=True)
def host_unchanged() -> Iterator[None]:
    before = host_state()
    yield
    after = host_state()
    leftovers = {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}
    assert not leftovers, f"the test left these behind on the host: {leftovers}"


@pytest.fixture(scope="session")
def mirror() -> str:
    return default_mirror()


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


SESSION_CACHE = Path(tempfile.gettempdir()) / f"vmdbt-session-cache-{os.getpid()}"


@pytest.fixture(scope="session", autouse=True)
def session_cache() -> Iterator[Path]:
    """Builds in one test run share a package and root cache, as builds on
    one host do; it is not the host's own cache, and it goes at the end."""
    yield SESSION_CACHE
    from vmdebootstrap.host.resources import remove_tree

    remove_tree(SESSION_CACHE)


UNWIND_SECONDS = 300  # how long an interrupted build may take to undo what it set up


def vmdebootstrap(*args: str, cwd: Path | None = None, timeout: int = 1800,
                  env: dict[str, str] | None = None, stdin: str | None = None,
                  unset: tuple[str, ...] = (), prefix: tuple[str, ...] = ()) -> Run:
    """Run the real command, as a user would (with the session's cache);
    ``env`` adds to the test run's environment, ``unset`` takes from it;
    ``prefix`` runs it through another command (unshare, taskset...)."""
    import time

    if "--no-cache" not in args and "--cache-dir" not in args:
        args = (*args, "--cache-dir", str(SESSION_CACHE))
    started = time.monotonic()
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "vmdebootstrap", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env={**{k: v for k, v in os.environ.items() if k not in unset},
                                 **(env or {})},
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL)
    try:
        stdout, stderr = proc.communicate(stdin, timeout=timeout)
    except BaseException:
        # Ctrl-C on the test run, or a timeout: let the build unwind its
        # mounts and loop devices (subprocess.run would SIGKILL it and leave
        # them on the host), and kill it only if it does not finish.
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=UNWIND_SECONDS)
        finally:
            proc.kill()
        raise
    took = time.monotonic() - started
    outputs = [f"{a} {b}" for a, b in itertools.pairwise(args)
               if a in ("--image", "--tarball", "--squash", "--iso")]
    print(f"vmdebootstrap {' '.join(outputs)}: exit {proc.returncode} in {took:.0f} s")
    return Run(proc.returncode, stdout, stderr, took)


def elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF", "not an ELF file"
    return int.from_bytes(data[18:20], "little")


def extract(iso: Path, member: str, dest: Path) -> bytes:
    """The bytes of ``member`` of ``iso``, also written to ``dest``."""
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", member,
                    str(dest)], capture_output=True, check=True)
    return dest.read_bytes()


def unsquash_cat(squashfs: Path, member: str) -> bytes:
    return subprocess.run(["unsquashfs", "-cat", str(squashfs), member],
                          capture_output=True, check=True).stdout


def dpkg_status(status_text: str) -> dict[str, str]:
    """package -> Status field, from a dpkg status file."""
    result: dict[str, str] = {}
    for stanza in status_text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines()
            if ": " in line and not line.startswith(" ")
        )
        if "Package" in fields:
            result[fields["Package"]] = fields.get("Status", "")
    return result


SECRET = "Tq9-vmdb-s3cret-Xw"  # distinctive, so a leak would be found
APT_MIRROR = "http://apt.example/debian"
KERNEL_APPEND = "vmdbt.live=on"
# The installer entries' preseed: an early command whose output only a shell
# can make (the file says $((6*7))); it leaves d-i's first question, the
# language, open, so a started installer asks it.
PRESEED = """d-i preseed/early_command string echo VMDBT_$((6*7))_PRESEEDED > /dev/console
d-i netcfg/get_domain string example.org
"""
PRESEEDED = "VMDBT_42_PRESEEDED"


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid one-colour PNG (for --splash), written without any image library."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\0" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height, 9)) + chunk(b"IEND", b""))


@dataclass
class LiveBuild:
    iso: Path
    squash: Path
    log: Path
    run: Run
    splash: bytes


@pytest.fixture(scope="session")
def live_build(tmp_path_factory: pytest.TempPathFactory) -> LiveBuild:
    """One debian-cd style live build (the README's default config plus the
    debian-cd options, a splash, --kernel-append and the installer entries
    with a preseed), giving both the ISO and the squash directory; the
    core checks and the boot tests share it."""
    base = tmp_path_factory.mktemp("live")
    iso, out, log = base / "live.iso", base / "out" / "amd64", base / "build.log"
    splash = png(640, 480, (0x1d, 0x3d, 0x5c))
    (base / "splash.png").write_bytes(splash)
    (base / "preseed.cfg").write_text(PRESEED)
    run = vmdebootstrap(
        "--no-default-configs", "--config", str(EXAMPLES / "live-console-amd64.conf"),
        "--owner", "nobody", "--verbose", "--lock-root-password",
        "--configure-apt", "--apt-mirror", APT_MIRROR,
        "--user", "user/live", "--user", f"tester/{SECRET}", "--sudo",
        "--log", str(log), "--log-level", "debug",
        "--splash", str(base / "splash.png"), "--kernel-append", KERNEL_APPEND,
        "--installer", "--preseed", str(base / "preseed.cfg"),
        "--iso", str(iso), "--squash", str(out),
    )
    (base / "splash.png").unlink()
    (base / "preseed.cfg").unlink()
    assert run.returncode == 0, run.stderr
    return LiveBuild(iso, out, log, run, splash)
