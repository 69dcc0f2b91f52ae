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

from vmdebootstrap.errors import BuildError, UsageError
from vmdebootstrap.host import resources
from vmdebootstrap.host.apt_sources import DEFAULT_ETC_APT, default_mirror
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


def host_mirror(etc_apt: Path = DEFAULT_ETC_APT) -> str | None:
    """The host's Debian mirror, found as builds find it: in sources.list and
    sources.list.d/*.list (one-line format) as well as *.sources (deb822)."""
    try:
        return default_mirror(etc_apt)
    except UsageError:
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


# --- vmdebootstrap 1.x hooks ---------------------------------------------------

@pytest.mark.parametrize("layout", ["sources.list", "sources.list.d/debian.list",
                                    "sources.list.d/debian.sources"])
def test_host_mirror_reads_both_formats(tmp_path: Path, layout: str) -> None:
    etc_apt = tmp_path / "apt"
    (etc_apt / "sources.list.d").mkdir(parents=True)
    if layout.endswith(".sources"):
        text = ("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
                "Components: main\n")
    else:
        text = ("deb http://security.example/debian-security bookworm-security main\n"
                "deb [arch=amd64] http://mirror.example/debian bookworm main contrib\n")
    (etc_apt / layout).write_text(text)
    assert host_mirror(etc_apt) == "http://mirror.example/debian/"
    assert host_mirror(tmp_path / "none") is None


def lib_1x(tmp_path: Path) -> Path:
    """The library at a 1.x-style path, linked as tools/setup-host links it."""
    lib = tmp_path / "usr/share/vmdebootstrap/common/customise.lib"
    lib.parent.mkdir(parents=True)
    lib.symlink_to(HELPERS)
    return lib


def test_1x_mount_support_and_cleanup(root: Path, env: HookEnv, tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    script = hook(tmp_path, f"""set -e
rootdir=$1
. {lib_1x(tmp_path)}
trap cleanup 0
mount_support
mountpoint -q ${{rootdir}}/proc
mountpoint -q ${{rootdir}}/sys
grep -q " ${{rootdir}}/proc .* - proc " /proc/self/mountinfo
grep -q " ${{rootdir}}/sys .* - sysfs " /proc/self/mountinfo
chroot ${{rootdir}} test -r /proc/self/status
cleanup
for m in proc sys dev/pts dev; do
    if mountpoint -q "${{rootdir}}/$m"; then echo "$m still mounted" >&2; exit 3; fi
done
echo "unmounted"
""")
    caplog.set_level(logging.DEBUG)
    run_hook(SubprocessRunner(), script, root, "live", env, timeout=60)
    assert "hook: unmounted" in [r.getMessage() for r in caplog.records]
    # No warnings: after_hook found nothing of the hook's left to undo.
    assert warnings_in(caplog) == []
    assert mounted_under(root) == []


def test_1x_trap_cleanup_unmounts_on_failure(root: Path, env: HookEnv, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    # 1.x hooks rely on `trap cleanup 0` alone when a command fails.
    script = hook(tmp_path, f"""set -e
rootdir=$1
. {lib_1x(tmp_path)}
trap cleanup 0
mount_support
false
""")
    with pytest.raises(BuildError, match="status 1"):
        run_hook(SubprocessRunner(), script, root, "live", env, timeout=60)
    assert not any("left mounted" in w for w in warnings_in(caplog))
    assert mounted_under(root) == []


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_1x_hook_runs_unchanged(root: Path, env: HookEnv, tmp_path: Path,
                                caplog: pytest.LogCaptureFixture) -> None:
    """A 1.x live hook: bash, plain `chroot apt-get install`, 1.x's names."""
    package = "hello"
    assert package not in installed(root)
    modprobe = root / "etc/modprobe.d"
    had_modprobe = modprobe.exists()
    sources = (root / "etc/apt/sources.list").read_text()
    script = tmp_path / "customise.sh"
    script.write_text(f"""#!/bin/bash

set -e

rootdir=$1

# common needs rootdir to already be defined.
. {lib_1x(tmp_path)}

trap cleanup 0

mount_support
disable_daemons
prepare_apt_source "$VMDEBOOTSTRAP_MIRROR" '{SUITE}'

chroot ${{rootdir}} sh -c 'echo "frontend=$DEBIAN_FRONTEND"'
chroot ${{rootdir}} apt-get -q -y install {package}

remove_daemon_block
replace_apt_source

blacklist_qemu_bochs

echo "Customisation complete"
""")
    script.chmod(0o755)
    caplog.set_level(logging.DEBUG)
    try:
        run_hook(SubprocessRunner(), script, root, "live", env, timeout=600)
        messages = [r.getMessage() for r in caplog.records]
        assert "hook: frontend=noninteractive" in messages
        assert "hook: Customisation complete" in messages
        assert warnings_in(caplog) == []
        assert package in installed(root)
        conf = modprobe / "qemu-blacklist.conf"
        assert conf.read_text() == "blacklist bochs-drm\n"
        assert conf.stat().st_mode & 0o777 == 0o644
        assert mounted_under(root) == []
        assert not (root / POLICY_RC_D).exists()
        assert (root / "etc/apt/sources.list").read_text() == sources
        assert not (root / SAVED_SOURCES).exists()
    finally:
        # Leave the shared root as this test found it.
        subprocess.run(["chroot", str(root), "dpkg", "--purge", package],
                       capture_output=True, check=False)
        (modprobe / "qemu-blacklist.conf").unlink(missing_ok=True)
        if not had_modprobe and modprobe.is_dir():
            shutil.rmtree(modprobe)
