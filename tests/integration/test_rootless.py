"""Building without root: an ordinary user builds the README's console live
ISO (its hook uses the helper library and installs curl with apt) with no
sudo, inside a user namespace mapped from their /etc/subuid range; the
image's files belong to root and to the image's own users, never to the
subordinate ids; the outputs belong to the user; the ISO boots to a sudo
shell under a boot test the user runs; a second build hits the user's own
cache.  A user without subordinate ids is refused before anything happens.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import vmdebootstrap
from tests.integration.conftest import KERNEL_APPEND
from vmdebootstrap.boot.console import default_command

pytestmark = [
    pytest.mark.integration,
    pytest.mark.boot,
    pytest.mark.skipif(os.geteuid() != 0, reason="creating the test users needs root"),
]

BUILDER = "vmdbt-rootless"
NO_IDS = "vmdbt-noids"
MARK = "rootless-ok"
# The user runs the code as it would the Debian package's: with Debian's
# python3, from a copy they can read (the checkout, and the venv's python,
# may sit below root's home).
PYTHON = "/usr/bin/python3"
SOURCE = Path(vmdebootstrap.__file__).parent


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: Path
    work: Path  # a directory of theirs for outputs and logs, with the code in src/

    @property
    def examples(self) -> Path:
        return self.work / "src/vmdebootstrap/examples"


def _make_user(name: str, system: bool = False) -> User:
    """A new user; a system user gets no subordinate ids from useradd."""
    subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh",
                    *(["--system"] if system else []), name], check=True)
    entry = pwd.getpwnam(name)
    work = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    shutil.copytree(SOURCE, work / "src/vmdebootstrap",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for path in (work, *work.rglob("*")):
        os.lchown(path, entry.pw_uid, entry.pw_gid)
    return User(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir), work)


def _drop_user(user: User) -> None:
    subprocess.run(["pkill", "-KILL", "-u", user.name], check=False)
    # The home holds the cache, whose files belong to the subordinate ids.
    subprocess.run(["userdel", "--remove", user.name], capture_output=True, check=False)
    shutil.rmtree(user.work, ignore_errors=True)


@pytest.fixture(scope="module")
def builder() -> Iterator[User]:
    """An ordinary user with a subordinate id range (useradd gives one)."""
    user = _make_user(BUILDER)
    try:
        ranges = Path("/etc/subuid").read_text() + Path("/etc/subgid").read_text()
        assert re.search(rf"^{BUILDER}:\d+:65536$", ranges, re.M), ranges
        yield user
    finally:
        _drop_user(user)


def as_user(user: User, *argv: str, stdin: str | None = None,
            timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    """``argv`` run by ``user`` with a login's environment: no root, no sudo."""
    env = {"HOME": str(user.home), "USER": user.name, "LOGNAME": user.name,
           "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
           "PYTHONPATH": str(user.work / "src")}
    return subprocess.run(["runuser", "-u", user.name, "--", "env", "-i",
                           *(f"{k}={v}" for k, v in env.items()), *argv],
                          input=stdin, capture_output=True, text=True, timeout=timeout,
                          cwd=user.work, check=False)


@dataclass(frozen=True)
class Built:
    iso: Path
    squash: Path
    logs: tuple[str, str]


@pytest.fixture(scope="module")
def built(builder: User) -> Built:
    """Two builds of the console ISO by the user: cold, then from their cache."""
    logs = []
    for n in (1, 2):
        log = builder.work / f"build{n}.log"
        run = as_user(builder, PYTHON, "-m", "vmdebootstrap", "--no-default-configs",
                      "--config", str(builder.examples / "live-console-amd64.conf"),
                      "--kernel-append", KERNEL_APPEND, "--verbose", "--log", str(log),
                      "--iso", str(builder.work / f"live{n}.iso"),
                      "--squash", str(builder.work / f"live{n}"))
        assert run.returncode == 0, f"{run.stderr}\n--- log ---\n{log.read_text()[-4000:]}"
        logs.append(log.read_text())
    return Built(builder.work / "live1.iso", builder.work / "live1", (logs[0], logs[1]))


def test_the_build_ran_in_a_user_namespace_and_the_second_hit_the_users_cache(
        builder: User, built: Built) -> None:
    first, second = built.logs
    assert "building without root: as root of a user namespace" in first
    assert "root cache: hit" in second and "root cache: hit" not in first
    roots = builder.home / ".cache/vmdebootstrap/roots"
    assert [p for p in roots.iterdir() if p.is_dir() and not p.name.startswith(".")]


def test_outputs_belong_to_the_user(builder: User, built: Built) -> None:
    for path in (built.iso, built.iso.with_name("live1.iso.sha256"), built.squash,
                 built.squash / "filesystem.squashfs", builder.work / "build1.log"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (builder.uid, builder.gid), path


def test_owners_inside_the_image_are_the_images_own(built: Built) -> None:
    listing = subprocess.run(["unsquashfs", "-lln", str(built.squash / "filesystem.squashfs")],
                             capture_output=True, text=True, check=True).stdout
    owners = {}
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 6 and "/" in fields[1]:
            path = line.partition(" squashfs-root")[2].partition(" -> ")[0]
            owners[path or "/"] = (fields[0], fields[1])
    assert len(owners) > 5000
    ids = {int(n) for _, ug in owners.values() for n in ug.split("/")}
    assert max(ids) < 65536, "a subordinate id leaked into the image"
    assert owners["/etc/passwd"][1] == "0/0"
    assert owners["/usr/bin/sudo"] == ("-rwsr-xr-x", "0/0")  # setuid kept
    assert owners["/home/user"][1] == "1000/1000"
    assert owners["/usr/bin/curl"][1] == "0/0"  # installed by the hook with apt
    # Ids other than root's and the user's: system groups such as tty (5).
    assert ids - {0, 1000}


def test_the_user_boots_it_to_a_sudo_shell(builder: User, built: Built) -> None:
    run = as_user(builder, PYTHON, "-m", "vmdebootstrap.boot.boottest", "--firmware", "bios",
                  "--user", "user/-", "--timeout", "900",
                  "--command", f"{default_command('user')} && test -x /usr/bin/curl "
                  f"&& echo {MARK}", str(built.iso), stdin="live\n", timeout=1200)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    lines = run.stdout.splitlines()
    assert "sudo-ok" in lines and MARK in lines


def test_a_user_without_subordinate_ids_is_refused_at_once() -> None:
    user = _make_user(NO_IDS, system=True)
    try:
        assert not re.search(rf"^{NO_IDS}:", Path("/etc/subuid").read_text(), re.M)
        run = as_user(user, PYTHON, "-m", "vmdebootstrap", "--no-default-configs",
                      "--config", str(user.examples / "live-console-amd64.conf"),
                      "--iso", str(user.work / "live.iso"), timeout=60)
        assert run.returncode == 2, run.stderr
        assert f"/etc/subuid has no range for {NO_IDS}" in run.stderr
        assert f"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {NO_IDS}" \
            in run.stderr
        assert [p.name for p in user.work.iterdir()] == ["src"]
        assert not (user.home / ".cache").exists()
    finally:
        _drop_user(user)


def test_a_killed_build_leaves_nothing_behind(builder: User) -> None:
    """SIGTERM to the user's vmdebootstrap, mid-bootstrap: it passes the
    signal into the namespace, the build unwinds, and it exits 130."""
    log = builder.work / "killed.log"
    before = {p.name for p in Path(tempfile.gettempdir()).glob("vmdebootstrap-*")}
    env = {"HOME": str(builder.home), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(builder.work / "src")}
    proc = subprocess.Popen(
        ["runuser", "-u", builder.name, "--", "env", "-i",
         *(f"{k}={v}" for k, v in env.items()), PYTHON, "-m", "vmdebootstrap",
         "--no-default-configs", "--config", str(builder.examples / "live-console-amd64.conf"),
         "--no-cache", "--verbose", "--log", str(log), "--iso", str(builder.work / "killed.iso")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=builder.work)
    try:
        deadline = time.monotonic() + 300
        while "mmdebstrap: I: installing" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(1)
        top = subprocess.run(["pgrep", "-o", "-u", builder.name, "-f", "python3 -m vmdebootstrap"],
                             capture_output=True, text=True, check=True).stdout.split()
        os.kill(int(top[0]), signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted by SIGTERM" in stderr
    assert subprocess.run(["pgrep", "-u", builder.name], check=False).returncode == 1
    after = {p.name for p in Path(tempfile.gettempdir()).glob("vmdebootstrap-*")}
    assert after == before
    assert sorted(p.name for p in builder.work.iterdir() if p.name.startswith("killed")) == \
        ["killed.log"]
