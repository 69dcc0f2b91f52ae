"""Fault injection: every failure leaves the build host exactly as it was.

Each test breaks a real build in one way (a failing or hanging hook, SIGINT
or SIGTERM in each phase, a bad mirror, suite or signature, an output that
cannot be written, a full disk, two builds sharing a cache, a hook that
leaves the host's /dev mounted in the root) and checks the outcome: a
non-zero exit with one clear message and no traceback; no mount, loop
device, temp dir, process inside the root or half-written output left
behind; a canary tree and the host's /dev untouched; the cache still valid.

Every build gets its own TMPDIR, so what it leaves there is found exactly,
even while other builds run on the host.  Most builds are minbase tarballs
without a kernel restored from the session's root cache (seconds); the
bootstrap phase itself is only targeted where it is the point.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.conftest import SESSION_CACHE, Run, vmdebootstrap
from vmdebootstrap import build as build_module
from vmdebootstrap.host.passwords import verify_password


def minbase(suite: str = "bookworm") -> tuple[str, ...]:
    return ("--no-default-configs", "--distribution", suite,
            "--debootstrapopts", "variant=minbase")


MINBASE = minbase()
TARBALL = (*MINBASE, "--no-kernel")  # the quickest build there is
# A live root (kernel, live-boot, and grub-pc for the image): one cached root
# for the squash, ISO and image tests (the image asks for live-boot too).
LIVE = (*MINBASE, "--package", "grub-pc")
ERROR = "vmdebootstrap: error:"
SECRET = "Fx7-vmdb-faults-s3cret"  # distinctive, so a leak would be found
APT_MIRROR = "http://apt.invalid/debian"  # .invalid: never a real host
HOST_DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty", "ptmx",
                  "loop-control")
# The host's own mount points that a build must never add to or take away.
HOST_TREES = ("/dev", "/proc", "/sys")
SEAM_WIRED = "checkpoint(" in Path(build_module.__file__).read_text()
needs_seam = pytest.mark.skipif(
    not SEAM_WIRED, reason="build.py does not call faults.checkpoint() yet")


# --- what the host looks like -----------------------------------------------------------


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def mountinfo() -> list[tuple[str, str]]:
    """(mount id, mount point) of every mount."""
    rows = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        rows.append((fields[0], _unescape(fields[4])))
    return rows


def host_mounts() -> set[tuple[str, str]]:
    return {(mid, point) for mid, point in mountinfo()
            if point == "/" or any(point == t or point.startswith(t + "/")
                                   for t in HOST_TREES)}


def mounts_under(path: Path) -> list[str]:
    base = str(path).rstrip("/")
    return [p for _, p in mountinfo() if p == base or p.startswith(base + "/")]


def loops_backed_by(path: Path) -> list[str]:
    out = subprocess.run(["losetup", "-a", "-n", "-O", "NAME,BACK-FILE"],
                         capture_output=True, text=True, check=False).stdout
    return [line for line in out.splitlines() if str(path) in line]


def processes_under(path: Path) -> list[str]:
    """Processes whose root or working directory is in ``path``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        for link in ("root", "cwd"):
            with contextlib.suppress(OSError):
                target = os.readlink(entry / link)
                if target == str(path) or target.startswith(f"{path}/"):
                    found.append(f"{entry.name} ({link} {target})")
    return found


def dev_nodes() -> dict[str, tuple[int, int]]:
    nodes = {}
    for name in HOST_DEV_NODES:
        st = os.lstat(f"/dev/{name}")
        nodes[name] = (st.st_mode, st.st_rdev)
    return nodes


def tree_digest(top: Path) -> dict[str, str]:
    """Every entry below top: type, mode and content (or link target)."""
    digest = {}
    for path in sorted([top, *top.rglob("*")]):
        st = path.lstat()
        rel = str(path.relative_to(top))
        if stat.S_ISLNK(st.st_mode):
            digest[rel] = f"link {os.readlink(path)}"
        elif stat.S_ISREG(st.st_mode):
            digest[rel] = f"file {st.st_mode:o} {hashlib.sha256(path.read_bytes()).hexdigest()}"
        else:
            digest[rel] = f"other {st.st_mode:o}"
    return digest


def make_canary(top: Path) -> Path:
    (top / "deep/er/still").mkdir(parents=True)
    (top / "precious.txt").write_text("do not delete\n")
    (top / "deep/er/still/data.bin").write_bytes(os.urandom(4096))
    (top / "deep/link").symlink_to("/dev/null")
    (top / "deep/er/empty").mkdir()
    return top


def cache_problems(cache: Path, integrity: bool = False) -> list[str]:
    """Why ``cache`` could not serve the next build; [] when it can."""
    problems: list[str] = []
    roots = cache / "roots"
    if not roots.is_dir():
        return problems
    for part in [*roots.glob(".*"), *(cache / "debs").glob(".*")]:
        problems.append(f"half-written cache entry {part}")
    trees = {p.name for p in roots.iterdir() if p.is_dir() and not p.name.startswith(".")}
    metas = {p.stem for p in roots.glob("*.json")}
    if trees != metas:
        problems.append(f"roots and their metadata disagree: {sorted(trees ^ metas)}")
    for meta in roots.glob("*.json"):
        try:
            json.loads(meta.read_text())["release"]
        except (ValueError, KeyError) as exc:
            problems.append(f"{meta}: {exc}")
    if integrity:
        for tree in sorted(trees):
            check = subprocess.run(["chroot", str(roots / tree), "dpkg", "--audit"],
                                   capture_output=True, text=True, check=False)
            if check.returncode != 0 or check.stdout.strip():
                problems.append(f"{tree}: dpkg --audit: {check.stdout.strip()} "
                                f"{check.stderr.strip()}")
    return problems


# --- one fault test's surroundings ----------------------------------------------------------


@dataclass
class Started:
    """A build running in the background, for sending it signals."""

    proc: subprocess.Popen[bytes]
    log: Path
    stdout: Path
    stderr: Path
    started: float = field(default_factory=time.monotonic)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, pattern: str, timeout: float = 600) -> None:
        """Until the log matches ``pattern``; fails if the build ends first."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern, re.MULTILINE)
        while time.monotonic() < deadline:
            if regex.search(self.log_text()):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = "\n".join(self.log_text().splitlines()[-30:])
        pytest.fail(f"the build never logged {pattern!r} (exit {self.proc.poll()}):\n"
                    f"{self.stderr.read_text()}\n--- log tail:\n{tail}")

    def send(self, sig: signal.Signals) -> None:
        if sig == signal.SIGINT:
            os.killpg(self.proc.pid, sig)  # Ctrl-C: the terminal's process group
        else:
            self.proc.send_signal(sig)  # kill PID, as a service manager does

    def finish(self, timeout: float = 900) -> Run:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            pytest.fail(f"the build did not end within {timeout} s")
        took = time.monotonic() - self.started
        print(f"vmdebootstrap (background): exit {self.proc.returncode} in {took:.0f} s")
        return Run(self.proc.returncode, self.stdout.read_text(), self.stderr.read_text(),
                   took)


@dataclass
class Fx:
    base: Path  # the test's tmp_path
    tmpdir: Path  # the builds' TMPDIR
    canary: Path
    host_mounts: set[tuple[str, str]]
    dev: dict[str, tuple[int, int]]
    canary_digest: dict[str, str]
    own_mounts: list[Path] = field(default_factory=list)
    runs: int = 0

    def env(self, tmpdir: Path | None = None) -> dict[str, str]:
        return {"TMPDIR": str(tmpdir or self.tmpdir)}

    def log(self) -> Path:
        self.runs += 1
        logs = self.base / "logs"
        logs.mkdir(exist_ok=True)
        return logs / f"build-{self.runs}.log"

    def run(self, *args: str, tmpdir: Path | None = None, timeout: int = 1800,
            env: dict[str, str] | None = None) -> tuple[Run, Path]:
        log = self.log()
        result = vmdebootstrap(*args, "--log", str(log), "--log-level", "debug",
                               timeout=timeout, env={**self.env(tmpdir), **(env or {})})
        return result, log

    def start(self, *args: str, tmpdir: Path | None = None,
              env: dict[str, str] | None = None) -> Started:
        if "--no-cache" not in args and "--cache-dir" not in args:
            args = (*args, "--cache-dir", str(SESSION_CACHE))
        log = self.log()
        out, err = log.with_suffix(".stdout"), log.with_suffix(".stderr")
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(
                [sys.executable, "-m", "vmdebootstrap", *args, "--log", str(log),
                 "--log-level", "debug"],
                stdin=subprocess.DEVNULL, stdout=o, stderr=e, start_new_session=True,
                env={**os.environ, **self.env(tmpdir), **(env or {})})
        return Started(proc, log, out, err)

    @contextlib.contextmanager
    def tmpfs(self, name: str, size: str, options: str = "") -> Iterator[Path]:
        """A small filesystem of its own, unmounted however the test ends."""
        where = self.base / name
        where.mkdir()
        opts = f"size={size},mode=0755" + (f",{options}" if options else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "fx-" + name, str(where)],
                       check=True)
        self.own_mounts.append(where)
        try:
            yield where
        finally:
            subprocess.run(["umount", str(where)], check=False)
            if mounts_under(where):
                subprocess.run(["umount", "--lazy", str(where)], check=False)
            self.own_mounts.remove(where)

    def hook(self, body: str, name: str = "hook.sh") -> Path:
        path = self.base / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
        return path

    # -- the outcome every fault must have --------------------------------------------

    def failed_clearly(self, run: Run, *says: str, code: int = 1) -> str:
        """The build failed with one error message containing ``says``."""
        both = run.stdout + run.stderr
        assert "Traceback" not in both, run.stderr
        errors = [line for line in run.stderr.splitlines() if line.startswith(ERROR)]
        assert len(errors) == 1, f"want one error message:\n{run.stderr}"
        for text in says:
            assert text in errors[0], f"{text!r} not in the error:\n{run.stderr}"
        assert run.returncode == code, run.stderr
        print(f"exit {run.returncode}: {errors[0]}")
        return errors[0]

    def left_nothing(self, *outputs: Path, tmpdir: Path | None = None,
                     cache: Path | None = SESSION_CACHE) -> None:
        """No leftovers of the build anywhere, and nothing else touched."""
        tmpdir = tmpdir or self.tmpdir
        leftovers: dict[str, object] = {}
        own = {str(p) for p in self.own_mounts}
        mounts = [p for p in mounts_under(self.base) if p not in own]
        if mounts:
            leftovers["mounts"] = mounts
        if self.host_mounts - host_mounts():
            leftovers["host mounts gone"] = sorted(self.host_mounts - host_mounts())
        if host_mounts() - self.host_mounts:
            leftovers["new host mounts"] = sorted(host_mounts() - self.host_mounts)
        loops = loops_backed_by(self.base)
        if loops:
            leftovers["loop devices"] = loops
        procs = processes_under(tmpdir)
        if procs:
            leftovers["processes in the build's temp dir"] = procs
        temps = sorted(p.name for p in tmpdir.iterdir() if p.name != "lost+found")
        if temps:
            leftovers["temp files"] = temps
        for output in outputs:
            if output.exists() or output.is_symlink():
                leftovers.setdefault("outputs", []).append(str(output))  # type: ignore[attr-defined]
            parent = output.parent
            if parent.is_dir():
                staged = [p.name for p in parent.iterdir()
                          if p.name.startswith(("." + output.name, ".vmdebootstrap-"))
                          or p.name.endswith((".part", ".tmp"))]
                if staged:
                    leftovers.setdefault("staging", []).extend(staged)  # type: ignore[attr-defined]
        if dev_nodes() != self.dev:
            leftovers["host /dev changed"] = dev_nodes()
        if tree_digest(self.canary) != self.canary_digest:
            leftovers["canary changed"] = True
        if cache is not None:
            problems = cache_problems(cache)
            if problems:
                leftovers["cache"] = problems
        assert not leftovers, f"the fault left these behind: {leftovers}"


@pytest.fixture(scope="module", autouse=True)
def warm_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One plain build first: the session cache exists before any test looks
    at the host (conftest), and holds the root most tests start from."""
    base = tmp_path_factory.mktemp("faults-warm")
    run = vmdebootstrap(*TARBALL, "--tarball", str(base / "root.tar"),
                        env={"TMPDIR": str(base)})
    assert run.returncode == 0, run.stderr


@pytest.fixture
def fx(tmp_path: Path) -> Iterator[Fx]:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    canary = make_canary(tmp_path / "canary")
    state = Fx(tmp_path, tmpdir, canary, host_mounts(), dev_nodes(), tree_digest(canary))
    yield state
    for where in list(state.own_mounts):  # a test that failed half-way
        subprocess.run(["umount", "--lazy", str(where)], check=False)


# --- the customisation hook ---------------------------------------------------------------


def test_hook_exits_1(fx: Fx) -> None:
    # It mounts the host's /dev (mount_proc) and leaves a process in the root
    # that holds the hook's output open.
    hook = fx.hook('. "$VMDEBOOTSTRAP_HELPERS"\nmount_proc\ndisable_daemons\n'
                   'chroot "$1" sleep 600 &\necho about to fail\nexit 1\n')
    out = fx.base / "out" / "root.tar"
    out.parent.mkdir()
    run, _ = fx.run(*TARBALL, "--tarball", str(out), "--customize", str(hook))
    fx.failed_clearly(run, "customisation hook", "status 1")
    assert "about to fail" in run.stderr
    fx.left_nothing(out)


def test_hook_hangs_past_the_timeout(fx: Fx) -> None:
    hook = fx.hook('. "$VMDEBOOTSTRAP_HELPERS"\nmount_proc\n'
                   'chroot "$1" sleep 600 >/dev/null 2>&1 &\necho hanging\nsleep 600\n')
    out = fx.base / "root.tar"
    run, _ = fx.run(*TARBALL, "--tarball", str(out), "--customize", str(hook),
                    "--hook-timeout", "3")
    fx.failed_clearly(run, "customisation hook", "--hook-timeout 3")
    assert run.seconds < 120
    fx.left_nothing(out)


@pytest.mark.parametrize("status", [0, 1])
def test_hook_leaves_host_dev_and_proc_mounted(fx: Fx, status: int) -> None:
    """Teardown unmounts what the hook left and never deletes through it."""
    hook = fx.hook(
        'set -e\nroot="$1"\n'
        'mount --rbind /dev "$root/dev"\n'
        'mount --bind /proc "$root/proc"\n'
        f'mkdir -p "$root/srv/canary"\nmount --bind {fx.canary} "$root/srv/canary"\n'
        'chroot "$root" sleep 600 >/dev/null 2>&1 &\n'
        f'echo "left the host mounted in the root"\nexit {status}\n')
    out = fx.base / "root.tar"
    run, _ = fx.run(*TARBALL, "--tarball", str(out), "--customize", str(hook),
                    "--pkglist")
    if status:
        fx.failed_clearly(run, "customisation hook", "status 1")
        fx.left_nothing(out, out.with_name("root.tar.packages"))
        return
    # The hook succeeded: the build goes on, says what it undid, and ships
    # none of the host.
    assert run.returncode == 0, run.stderr
    assert "the hook left mounted under" in run.stderr
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    assert "./dev/loop-control" not in names
    assert not [n for n in names if n.startswith("./srv/canary/")]
    assert not [n for n in names if re.match(r"\./proc/\d", n)]
    out.unlink()
    out.with_name("root.tar.packages").unlink()
    fx.left_nothing(out)


# --- signals in each phase ----------------------------------------------------------------

SIGNALS = [signal.SIGINT, signal.SIGTERM]


def interrupted(fx: Fx, build: Started, sig: signal.Signals, *outputs: Path,
                cache: Path | None = SESSION_CACHE) -> Run:
    build.send(sig)
    run = build.finish()
    code = 129 if sig == signal.SIGHUP else 130
    fx.failed_clearly(run, f"interrupted by {sig.name}", code=code)
    fx.left_nothing(*outputs, cache=cache)
    return run


@pytest.mark.parametrize(("sig", "when"), [
    (signal.SIGINT, r"\+ mmdebstrap --mode"),  # as it starts
    (signal.SIGINT, r"mmdebstrap: I: installing essential packages"),  # mounts up
    (signal.SIGTERM, r"mmdebstrap: I: installing essential packages"),
    # A dropped ssh session: the most common way a long build dies.
    (signal.SIGHUP, r"mmdebstrap: I: installing essential packages"),
])
def test_signal_during_bootstrap(fx: Fx, sig: signal.Signals, when: str) -> None:
    out = fx.base / "root.tar"
    build = fx.start(*TARBALL, "--tarball", str(out), "--refresh-cache")
    build.wait_for(when)
    interrupted(fx, build, sig, out)


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_during_configuration(fx: Fx, sig: signal.Signals) -> None:
    """Configuration lasts a second or two with many accounts: the signal
    lands while useradd runs in the root with proc, sys and devpts mounted."""
    users = [a for i in range(30) for a in ("--user", f"user{i}/pass-{i}-word")]
    out = fx.base / "root.tar"
    build = fx.start(*TARBALL, "--tarball", str(out), *users, "--sudo")
    build.wait_for(r"\+ chroot \S+ useradd .*user1$")
    interrupted(fx, build, sig, out)


@needs_seam
@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_during_configuration_seam(fx: Fx, sig: signal.Signals) -> None:
    out = fx.base / "root.tar"
    build = fx.start(*TARBALL, "--tarball", str(out), "--user", "u/pass-word",
                     env={"VMDEBOOTSTRAP_FAULT": "configure:pause"})
    build.wait_for("paused at configure")
    interrupted(fx, build, sig, out)


@needs_seam
def test_failure_during_configuration_seam(fx: Fx) -> None:
    out = fx.base / "root.tar"
    run, _ = fx.run(*TARBALL, "--tarball", str(out),
                    env={"VMDEBOOTSTRAP_FAULT": "configure:fail"})
    fx.failed_clearly(run, "failing at configure")
    fx.left_nothing(out)


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_during_the_hook(fx: Fx, sig: signal.Signals) -> None:
    hook = fx.hook('. "$VMDEBOOTSTRAP_HELPERS"\nmount_proc\ndisable_daemons\n'
                   'chroot "$1" sleep 600 &\necho "hook: waiting"\nsleep 600\n')
    out = fx.base / "root.tar"
    build = fx.start(*TARBALL, "--tarball", str(out), "--customize", str(hook))
    build.wait_for("hook: hook: waiting")
    interrupted(fx, build, sig, out)


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_during_mksquashfs(fx: Fx, sig: signal.Signals) -> None:
    out = fx.base / "live"
    build = fx.start(*LIVE, "--squash", str(out))
    build.wait_for(r"\+ mksquashfs ")
    time.sleep(1)  # let it write part of the squashfs
    interrupted(fx, build, sig, out)


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_while_writing_the_image(fx: Fx, sig: signal.Signals) -> None:
    """Loop device attached, partitions mounted, chroot mounts up."""
    out = fx.base / "disk.img"
    build = fx.start(*LIVE, "--image", str(out), "--size", "2G", "--package", "live-boot")
    build.wait_for("Installing the bootloader")
    time.sleep(0.5)
    interrupted(fx, build, sig, out)


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_while_writing_the_iso(fx: Fx, sig: signal.Signals) -> None:
    out = fx.base / "live.iso"
    build = fx.start(*LIVE, "--iso", str(out), "--squash-compression", "lz4")
    build.wait_for(r"\+ xorriso ")
    time.sleep(0.5)
    interrupted(fx, build, sig, out)


# --- the mirror ------------------------------------------------------------------------


def test_unreachable_mirror(fx: Fx) -> None:
    out = fx.base / "root.tar"
    mirror = "http://127.0.0.1:9/debian"
    run, log = fx.run(*TARBALL, "--tarball", str(out), "--mirror", mirror)
    fx.failed_clearly(run, f"cannot reach the mirror {mirror}", "check --mirror")
    assert "Connection refused" in log.read_text()  # the details stay in the log
    fx.left_nothing(out)


def test_suite_the_mirror_does_not_have(fx: Fx) -> None:
    out = fx.base / "root.tar"
    # wheezy is a Debian release vmdebootstrap knows, long gone from the mirrors.
    run, _ = fx.run(*minbase("wheezy"), "--no-kernel", "--tarball", str(out))
    fx.failed_clearly(run, "has no suite wheezy", "check --distribution")
    fx.left_nothing(out)


def test_suite_that_does_not_exist(fx: Fx) -> None:
    out = fx.base / "root.tar"
    run, _ = fx.run(*minbase("nosuchsuite"), "--no-kernel", "--tarball", str(out))
    fx.failed_clearly(run, "--distribution 'nosuchsuite'", code=2)
    fx.left_nothing(out)


@pytest.fixture(scope="module")
def real_inrelease(mirror: str) -> bytes:
    url = f"{mirror.rstrip('/')}/dists/bookworm/InRelease"
    with urllib.request.urlopen(url, timeout=60) as response:
        data: bytes = response.read()
    return data


def local_mirror(base: Path, inrelease: bytes, how: str) -> str:
    """A file:// mirror whose Release signature does not verify."""
    dists = base / how / "dists" / "bookworm"
    dists.mkdir(parents=True)
    text = inrelease.decode()
    if how == "tampered":  # one changed line inside the signed text
        changed = re.sub(r"^(Suite: .*)$", r"\1x", text, count=1, flags=re.MULTILINE)
        assert changed != text
        (dists / "InRelease").write_text(changed)
    else:  # signed by nobody: the bare Release text
        body = text.split("\n\n", 1)[1].split("-----BEGIN PGP SIGNATURE-----")[0]
        (dists / "Release").write_text(body)
    return f"file://{base / how}"


@pytest.mark.parametrize("how", ["tampered", "unsigned"])
def test_release_signature_does_not_verify(fx: Fx, real_inrelease: bytes, how: str) -> None:
    out = fx.base / "root.tar"
    mirror = local_mirror(fx.base, real_inrelease, how)
    run, log = fx.run(*TARBALL, "--tarball", str(out), "--mirror", mirror, "--no-cache")
    fx.failed_clearly(run, "Release signature does not verify", "refusing to continue")
    assert ("BADSIG" if how == "tampered" else "is not signed") in log.read_text()
    fx.left_nothing(out)


# --- signature policy --------------------------------------------------------------------

WARNING = "the mirror's Release signature will NOT be verified"


def test_signatures_are_checked_by_default(fx: Fx) -> None:
    run, _ = fx.run(*TARBALL, "--tarball", str(fx.base / "root.tar"), "--dry-run")
    assert run.returncode == 0, run.stderr
    assert "AllowInsecureRepositories" not in run.stdout
    assert "AllowUnauthenticated" not in run.stdout
    assert WARNING not in run.stdout + run.stderr


def test_no_check_gpg_warns_on_the_console_in_a_dry_run(fx: Fx) -> None:
    run, log = fx.run(*TARBALL, "--tarball", str(fx.base / "root.tar"), "--dry-run",
                      "--no-check-gpg")
    assert run.returncode == 0, run.stderr
    # Once: in the printed plan, not also as a warning beside it.
    assert f"note: WARNING: {WARNING}" in run.stdout
    assert (run.stdout + run.stderr).count(WARNING) == 1
    assert not log.exists()  # a dry run writes nothing, not even the log


def test_no_check_gpg_warns_in_the_log_and_on_the_console(fx: Fx,
                                                          real_inrelease: bytes) -> None:
    """Only --no-check-gpg lets a tampered Release through, and it says so."""
    out = fx.base / "root.tar"
    mirror = local_mirror(fx.base, real_inrelease, "tampered")
    run, log = fx.run(*TARBALL, "--tarball", str(out), "--mirror", mirror, "--no-cache",
                      "--no-check-gpg")
    assert run.returncode == 1  # the local mirror has no packages
    assert WARNING in run.stderr
    text = log.read_text()
    assert WARNING in text
    assert "signature does not verify" not in run.stderr
    assert "binary-amd64/Packages" in text  # apt went past the Release file
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    fx.left_nothing(out)


# --- outputs that cannot be written ----------------------------------------------------------


def test_output_on_a_read_only_filesystem(fx: Fx) -> None:
    with fx.tmpfs("ro", "1M", "ro") as ro:
        out = ro / "root.tar"
        run, _ = fx.run(*TARBALL, "--tarball", str(out))
        fx.failed_clearly(run, "--tarball", "not writable", code=2)
        fx.left_nothing(out)


def test_output_is_an_existing_directory(fx: Fx) -> None:
    out = fx.base / "root.tar"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    run, _ = fx.run(*TARBALL, "--tarball", str(out))
    # The output kind checks its own path: refused before the build (exit 2).
    fx.failed_clearly(run, f"--tarball: {out} is a directory", code=2)
    assert (out / "keep.txt").read_text() == "mine\n"
    (out / "keep.txt").unlink()
    out.rmdir()
    fx.left_nothing(out)


def test_output_directory_turns_read_only_during_the_build(fx: Fx) -> None:
    with fx.tmpfs("out", "64M") as where:
        out = where / "root.tar"
        build = fx.start(*TARBALL, "--tarball", str(out))
        # Past planning (which checks the directory), before anything is
        # staged there: made read-only any later, the staged file could not
        # be removed either.
        build.wait_for("Bootstrapping")
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        run = build.finish()
        fx.failed_clearly(run, f"--tarball: cannot write in {where}", "Read-only file system")
        fx.left_nothing(out)


# --- a full disk ------------------------------------------------------------------------


def test_disk_fills_up_during_bootstrap(fx: Fx) -> None:
    with fx.tmpfs("small", "96M") as small:
        out = fx.base / "root.tar"
        run, log = fx.run(*TARBALL, "--tarball", str(out), "--no-cache", tmpdir=small)
        fx.failed_clearly(run, f"ran out of disk space in {small}", "set TMPDIR")
        assert "No space left on device" in log.read_text()
        fx.left_nothing(out, tmpdir=small)


def test_disk_fills_up_while_writing_the_tarball(fx: Fx) -> None:
    with fx.tmpfs("outfs", "24M") as where:
        out = where / "root.tar"
        run, _ = fx.run(*TARBALL, "--tarball", str(out))
        fx.failed_clearly(run, f"ran out of disk space in {where}", "--tarball")
        fx.left_nothing(out)


def test_disk_too_small_for_the_squashfs(fx: Fx) -> None:
    with fx.tmpfs("outfs", "32M") as where:
        out = where / "live"
        run, _ = fx.run(*LIVE, "--squash", str(out))
        fx.failed_clearly(run, "free space")
        fx.left_nothing(out)


def test_iso_rebuild_without_room_keeps_the_first_iso(fx: Fx) -> None:
    """The new ISO is staged beside the old one: where there is no room for
    both, the rebuild stops before xorriso with a clear message, and the
    first ISO stays bit for bit, with nothing beside it."""
    first = fx.base / "first.iso"
    run, _ = fx.run(*LIVE, "--iso", str(first), "--squash-compression", "lz4",
                    "--cache-dir", str(SESSION_CACHE))
    assert run.returncode == 0, run.stderr
    size = first.stat().st_size
    with fx.tmpfs("isofs", f"{(size >> 20) + 32}M") as where:
        out = where / "live.iso"
        shutil.copyfile(first, out)
        before = hashlib.sha256(out.read_bytes()).hexdigest()
        run, _ = fx.run(*LIVE, "--iso", str(out), "--squash-compression", "lz4",
                        "--cache-dir", str(SESSION_CACHE))
        fx.failed_clearly(run, "--iso: not enough free space", str(where),
                          "previous live.iso is kept")
        assert hashlib.sha256(out.read_bytes()).hexdigest() == before
        assert [p.name for p in where.iterdir()] == ["live.iso"]
        out.unlink()
        fx.left_nothing(out)
    first.unlink()
    first.with_name("first.iso.sha256").unlink()  # published with it


# --- two builds, one cache ------------------------------------------------------------------


def test_two_builds_share_a_cache(fx: Fx) -> None:
    cache = fx.base / "cache"
    first, second = fx.base / "one.tar", fx.base / "two.tar"
    builds = [fx.start(*TARBALL, "--tarball", str(out), "--cache-dir", str(cache))
              for out in (first, second)]
    runs = [b.finish() for b in builds]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert first.stat().st_size > 10 * 2**20 and second.stat().st_size > 10 * 2**20
    assert cache_problems(cache, integrity=True) == []
    third = fx.base / "three.tar"
    run, log = fx.run(*TARBALL, "--tarball", str(third), "--cache-dir", str(cache))
    assert run.returncode == 0, run.stderr
    assert "root cache: hit" in log.read_text()
    for out in (first, second, third):
        out.unlink()
    fx.left_nothing(first, second, third, cache=cache)


# --- an image safe to hand out -----------------------------------------------------------


def test_tarball_is_safe_to_hand_out(fx: Fx, mirror: str) -> None:
    out = fx.base / "safe.tar"
    run, log = fx.run(*TARBALL, "--tarball", str(out), "--package", "openssh-server",
                      "--package", "systemd-sysv",
                      "--user", f"tester/{SECRET}", "--lock-root-password",
                      "--configure-apt", "--apt-mirror", APT_MIRROR, "--pkglist")
    assert run.returncode == 0, run.stderr
    with tarfile.open(out) as tar:
        names = set(tar.getnames())

        def read(name: str) -> bytes:
            member = tar.extractfile(name)
            assert member is not None, name
            return member.read()

        assert "./usr/sbin/sshd" in names
        assert not [n for n in names if n.startswith("./etc/ssh/ssh_host_")]
        assert "./etc/systemd/system/vmdebootstrap-ssh-keygen.service" in names
        assert ("./etc/systemd/system/multi-user.target.wants/"
                "vmdebootstrap-ssh-keygen.service") in names
        assert read("./etc/machine-id") == b""
        shadow = {line.split(":")[0]: line.split(":")[1]
                  for line in read("./etc/shadow").decode().splitlines()}
        assert shadow["root"].startswith("!")
        assert shadow["tester"].startswith("$y$")
        assert verify_password(SECRET, shadow["tester"])
        build_mirror = mirror.rstrip("/")
        for name in names:
            if name.startswith("./etc/apt/") and tar.getmember(name).isfile():
                assert build_mirror not in read(name).decode(errors="replace"), name
        assert APT_MIRROR in read("./etc/apt/sources.list").decode()
        assert not [n for n in names if n.startswith("./var/lib/apt/lists/")
                    and n.endswith("_Packages")]
    assert SECRET.encode() not in out.read_bytes()
    for text in (log.read_text(), run.stdout, run.stderr):
        assert SECRET not in text
    packages = out.with_name("safe.tar.packages")
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert stat.S_IMODE(packages.stat().st_mode) == 0o644
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    out.unlink()
    packages.unlink()
    fx.left_nothing(out)


def test_the_cache_still_serves_the_next_build(fx: Fx) -> None:
    """After all the faults above, the session cache still gives a hit."""
    out = fx.base / "root.tar"
    run, log = fx.run(*TARBALL, "--tarball", str(out))
    assert run.returncode == 0, run.stderr
    assert "root cache: hit" in log.read_text()
    assert cache_problems(SESSION_CACHE, integrity=True) == []
    out.unlink()
    fx.left_nothing(out)
