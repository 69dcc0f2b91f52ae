"""Real hooks using the shell helper library, run through run_hook as root.

One small root is bootstrapped per module; every test leaves it as it found
it, and a fixture unmounts whatever a failing test left under it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmdebootstrap.errors import BuildError
from vmdebootstrap.host import resources
from vmdebootstrap.host.run import SubprocessRunner
from vmdebootstrap.root.hook import (
    HELPERS,
    POLICY_RC_D,
    SAVED_SOURCES,
    HookEnv,
    restore_apt_sources,
    run_hook,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="needs mmdebstrap"),
]

SUITE = "bookworm"
# A small package whose Recommends are not in a --variant=apt root.
PACKAGE = "procps"


def host_mirror() -> str | None:
    """The first non-security deb URI of the host's apt sources."""
    for sources in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in sources.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                if "security" not in uri:
                    return uri
    return None


def host_pseudo_mounts() -> list[str]:
    """The host's own /dev, /proc and /sys mounts, each layer once.

    A bind mount of /dev with shared propagation would stack the hook's
    devpts here too.  Other mounts are left out: builds running in parallel
    mount and unmount their own roots meanwhile.
    """
    return [p for p in resources.mount_points()
            if p in ("/dev", "/proc", "/sys") or p.startswith(("/dev/", "/proc/", "/sys/"))]


def mounted_under(root: Path) -> list[str]:
    base = os.path.realpath(root)
    return [p for p in resources.mounts_under(root) if p != base]


def installed(root: Path) -> set[str]:
    status = (root / "var/lib/dpkg/status").read_text()
    names = set()
    for stanza in status.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines()
                      if ": " in line and not line[0].isspace())
        if fields.get("Status") == "install ok installed":
            names.add(fields["Package"])
    return names


def recommends(package: str) -> list[str]:
    """First alternative of each Recommends, as the host's apt knows them."""
    out = subprocess.run(["apt-cache", "show", package], capture_output=True,
                         text=True).stdout
    for line in out.split("\n\n")[0].splitlines():
        if line.startswith("Recommends:"):
            return [alt.split("|")[0].split()[0]
                    for alt in line.split(":", 1)[1].split(",")]
    return []


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # A zombie is dead; only its parent has not collected it yet.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="module")
def mirror() -> str:
    found = host_mirror()
    if found is None:
        pytest.skip("no Debian mirror in the host's apt sources")
    return found


@pytest.fixture(scope="module")
def built_root(tmp_path_factory: pytest.TempPathFactory, mirror: str) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("hooks") / "root"
    subprocess.run(["mmdebstrap", "--quiet", "--variant=apt", SUITE, str(root), mirror],
                   check=True)
    try:
        yield root
    finally:
        runner = SubprocessRunner()
        resources.kill_processes_in(root)
        resources.unmount_under(root, runner)
        # Refuses to cross into a forgotten bind mount of the host's /dev.
        resources.remove_tree(root)


@pytest.fixture
def root(built_root: Path) -> Iterator[Path]:
    outside = host_pseudo_mounts()
    sources = (built_root / "etc/apt/sources.list").read_text()
    try:
        yield built_root
    finally:
        resources.kill_processes_in(built_root)
        resources.unmount_under(built_root, SubprocessRunner(), include_self=False)
        (built_root / POLICY_RC_D).unlink(missing_ok=True)
        restore_apt_sources(built_root)
    # After the clean-up, so a broken test cannot hide a host mount change.
    assert host_pseudo_mounts() == outside
    assert (built_root / "etc/apt/sources.list").read_text() == sources


@pytest.fixture
def env(mirror: str) -> HookEnv:
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                          text=True, check=True).stdout.strip()
    return HookEnv(arch=arch, distribution=SUITE, mirror=mirror, apt_mirror=mirror,
                   components=("main",))


def hook(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "hook.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_full_hook_installs_with_recommends(root: Path, env: HookEnv, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    wanted = recommends(PACKAGE) or ["psmisc"]
    before = installed(root)
    assert PACKAGE not in before and not set(wanted) & before
    sources = (root / "etc/apt/sources.list").read_text()
    script = hook(tmp_path, f"""set -e
rootdir=$1
. "$VMDEBOOTSTRAP_HELPERS"
export_env
trap cleanup EXIT
mount_proc
for m in proc sys dev dev/pts; do mountpoint -q "$rootdir/$m"; done
grep -q " $rootdir/dev/pts .* - devpts " /proc/self/mountinfo
disable_daemons
prepare_apt_source "$VMDEBOOTSTRAP_MIRROR"
apt_install {PACKAGE}
remove_daemon_block
replace_apt_source
cleanup
echo "hook done for $2 on $VMDEBOOTSTRAP_ARCH"
""")
    caplog.set_level(logging.DEBUG)
    run_hook(SubprocessRunner(), script, root, "live", env, timeout=600)

    now = installed(root)
    assert PACKAGE in now
    assert set(wanted) <= now, f"Recommends {wanted} not installed"
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("hook: Setting up " + PACKAGE) for m in messages)
    assert f"hook: hook done for live on {env.arch}" in messages
    assert warnings_in(caplog) == []
    assert mounted_under(root) == []
    assert not (root / POLICY_RC_D).exists()
    assert (root / "etc/apt/sources.list").read_text() == sources
    assert not (root / SAVED_SOURCES).exists()
    lists = {p.name for p in (root / "var/lib/apt/lists").iterdir()}
    assert lists <= {"lock", "partial"}


def test_failing_hook_is_cleaned_up(root: Path, env: HookEnv, tmp_path: Path,
                                    caplog: pytest.LogCaptureFixture) -> None:
    sources = (root / "etc/apt/sources.list").read_text()
    script = hook(tmp_path, """set -e
. "$VMDEBOOTSTRAP_HELPERS"
mount_proc
disable_daemons
prepare_apt_source "$VMDEBOOTSTRAP_MIRROR"
chroot "$1" sleep 600 >/dev/null 2>&1 &
echo "giving up" >&2
exit 1
""")
    with pytest.raises(BuildError) as info:
        run_hook(SubprocessRunner(), script, root, "live", env, timeout=300)
    message = str(info.value)
    assert f"customisation hook {script} failed" in message
    assert "status 1" in message and "giving up" in message

    assert mounted_under(root) == []
    assert resources.processes_in_root(root) == []
    assert not (root / POLICY_RC_D).exists()
    assert (root / "etc/apt/sources.list").read_text() == sources
    assert not (root / SAVED_SOURCES).exists()
    warned = " ".join(warnings_in(caplog))
    for expected in ("processes running", "left mounted", "policy-rc.d", "apt source"):
        assert expected in warned


def test_timeout_kills_hook_and_children(root: Path, env: HookEnv, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = hook(tmp_path, f""". "$VMDEBOOTSTRAP_HELPERS"
mount_proc
sleep 600 &
echo $$ $! >"{pids}"
wait
""")
    start = time.monotonic()
    with pytest.raises(BuildError, match="--hook-timeout 2 s"):
        run_hook(SubprocessRunner(), script, root, "live", env, timeout=2)
    assert time.monotonic() - start < 15
    for pid in map(int, pids.read_text().split()):
        assert not alive(pid), f"process {pid} still running"
    assert mounted_under(root) == []


def test_cleanup_twice(root: Path, env: HookEnv, tmp_path: Path,
                       caplog: pytest.LogCaptureFixture) -> None:
    script = hook(tmp_path, """set -e
. "$VMDEBOOTSTRAP_HELPERS"
cleanup
trap cleanup EXIT
mount_proc
mount_proc
cleanup
cleanup
if mountpoint -q "$1/proc" || mountpoint -q "$1/dev"; then exit 3; fi
""")
    run_hook(SubprocessRunner(), script, root, "live", env, timeout=60)
    assert mounted_under(root) == []
    assert warnings_in(caplog) == []


def test_devpts_does_not_reach_host_with_shared_propagation(root: Path) -> None:
    # systemd makes / shared; this host may not.  A private mount namespace
    # with shared propagation shows the case without touching the host, and
    # everything mounted in it goes away with it.
    script = """mount --make-rshared /
. "$VMDEBOOTSTRAP_HELPERS"
count() { awk '$5 == "/dev/pts"' /proc/self/mountinfo | wc -l; }
before=$(count)
mount_proc || exit 2
after=$(count)
cleanup || exit 3
echo "$before $after"
"""
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "unchanged", "sh", "-c", script],
        env={"PATH": os.environ["PATH"], "VMDEBOOTSTRAP_ROOT": str(root),
             "VMDEBOOTSTRAP_HELPERS": str(HELPERS)},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    before, after = result.stdout.split()
    assert before == after
