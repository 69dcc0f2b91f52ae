"""Building without root: the build runs as root of its own user namespace.

An ordinary user's build forks a child that unshares a user namespace; the
parent maps the child's ids with newuidmap/newgidmap (the uidmap package,
setuid root): root inside is the user outside, so everything the build
writes outside the image belongs to them, and ids 1..N inside are the
user's subordinate range from /etc/subuid and /etc/subgid, so the image's
own users and groups keep their ids.  The child then unshares a mount and
a PID namespace and forks the build as PID 1 there: its mounts (chroot
mounts, overlays) exist only in that namespace and vanish with it, and its
/proc lists only its own processes.  The same mechanism as mmdebstrap's
unshare mode; the build itself is the one a root build runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pwd
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap.errors import VmdebootstrapError
from vmdebootstrap.host.run import Runner

log = logging.getLogger("vmdebootstrap")

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
# Debian's system users and groups go up to 65534 (nobody, nogroup).
NEEDED_IDS = 65536
SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
BINFMT = "/proc/sys/fs/binfmt_misc"


class NamespaceError(VmdebootstrapError):
    """The user namespace could not be set up; the message says the fix."""


@dataclass(frozen=True)
class IdMap:
    """Inner 0 is the user; inner 1..count their subordinate ids."""

    uid: int
    gid: int
    subuid: tuple[int, int]  # (first, count)
    subgid: tuple[int, int]

    def uid_args(self) -> list[str]:
        return ["0", str(self.uid), "1", "1", *map(str, self.subuid)]

    def gid_args(self) -> list[str]:
        return ["0", str(self.gid), "1", "1", *map(str, self.subgid)]


def inside() -> bool:
    """Whether this process runs in a user namespace other than the host's
    (here, or as root of a rootless container): mknod, sysfs and privileged
    overlay options are then not available."""
    try:
        text = Path("/proc/self/uid_map").read_text()
    except OSError:
        return False
    return text.split() != ["0", "0", "4294967295"]


def id_maps(proc: Path = Path("/proc/self")) -> str:
    """This namespace's uid and gid maps in one line, '' on the host's."""
    if not inside():
        return ""
    maps = []
    for name in ("uid_map", "gid_map"):
        rows = (proc / name).read_text().split("\n")
        maps.append(",".join(":".join(row.split()) for row in rows if row.strip()))
    return " ".join(maps)


def subordinate_range(path: Path, name: str, uid: int) -> tuple[int, int] | None:
    """The largest range of ``name`` (or its numeric id) in a subuid/subgid file."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    best: tuple[int, int] | None = None
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (name, str(uid)):
            continue
        try:
            first, count = int(fields[1]), int(fields[2])
        except ValueError:
            continue
        if best is None or count > best[1]:
            best = (first, count)
    return best


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def kernel_problem(read: Callable[[str], int | None] = _read_int) -> str | None:
    """A sysctl that keeps unprivileged users out of user namespaces."""
    if read("/proc/sys/kernel/unprivileged_userns_clone") == 0:
        return ("unprivileged user namespaces are disabled: as root, run "
                "`sysctl -w kernel.unprivileged_userns_clone=1` (and set it in "
                "/etc/sysctl.d/ to keep it)")
    if read("/proc/sys/user/max_user_namespaces") == 0:
        return ("user namespaces are disabled: as root, run "
                "`sysctl -w user.max_user_namespaces=10000` (and set it in /etc/sysctl.d/)")
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1:
        return ("AppArmor keeps unprivileged users out of user namespaces: as root, run "
                "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, or give "
                "vmdebootstrap an AppArmor profile with `userns,`")
    return None


def id_map(uid: int | None = None, gid: int | None = None, subuid: Path | None = None,
           subgid: Path | None = None) -> tuple[IdMap | None, list[str]]:
    """The map for this user, or the problems that prevent one, each with its fix."""
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    subuid, subgid = subuid or SUBUID, subgid or SUBGID
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    problems = []
    missing = [tool for tool in ("newuidmap", "newgidmap") if shutil.which(tool) is None]
    if missing:
        problems.append(f"{' and '.join(missing)} not found: as root, run "
                        "`apt-get install uidmap`")
    ranges: dict[Path, tuple[int, int]] = {}
    for path in (subuid, subgid):
        found = subordinate_range(path, name, uid)
        if found is not None and found[1] >= NEEDED_IDS - 1:
            ranges[path] = found
        else:
            have = f"only {found[1]} ids" if found else "no range"
            problems.append(
                f"{path} has {have} for {name}: a build without root needs "
                f"{NEEDED_IDS - 1} subordinate ids; as root, run `usermod --add-subuids "
                f"100000-165535 --add-subgids 100000-165535 {name}` (or add the line "
                f"`{name}:100000:65536` to /etc/subuid and /etc/subgid; pick a range "
                "no other user has)")
    kernel = kernel_problem()
    if kernel:
        problems.append(kernel)
    if problems:
        return None, problems
    first_u, count_u = ranges[subuid]
    first_g, count_g = ranges[subgid]
    return IdMap(uid, gid, (first_u, min(count_u, NEEDED_IDS)),
                 (first_g, min(count_g, NEEDED_IDS))), []


def _unshare(flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        errno = ctypes.get_errno()
        raise NamespaceError(
            f"could not create a user namespace: {os.strerror(errno)}; "
            f"{kernel_problem() or 'is this a container that forbids unshare(2)?'}")


def as_namespace_root(ids: IdMap, runner: Runner, body: Callable[[], int],
                      on_error: Callable[[BaseException], int]) -> int:
    """Run ``body`` as root of a new user, mount and PID namespace; its
    exit code.  ``on_error`` reports what failed before ``body`` ran."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(go_w)
        _exit(lambda: _child(runner, body, on_error, ready_w, go_r), on_error)
    os.close(ready_w)
    os.close(go_r)
    with forwarded_signals(pid):
        try:
            if os.read(ready_r, 1) == b"u":
                os.write(go_w, _map_ids(runner, pid, ids).encode() or b"ok")
        finally:
            os.close(ready_r)
            os.close(go_w)
        return _wait(pid)


def _map_ids(runner: Runner, pid: int, ids: IdMap) -> str:
    """Write the child's maps; an error message, or '' when done."""
    for tool, args in (("newuidmap", ids.uid_args()), ("newgidmap", ids.gid_args())):
        result = runner.run([tool, str(pid), *args], check=False, label=tool)
        if result.returncode != 0:
            return (f"{tool} failed: {' '.join(result.tail) or result.returncode}; "
                    "check the ranges in /etc/subuid and /etc/subgid and that "
                    f"{tool} is setuid root (the uidmap package)")
    return ""


def _child(runner: Runner, body: Callable[[], int],
           on_error: Callable[[BaseException], int], ready_w: int, go_r: int) -> int:
    _unshare(CLONE_NEWUSER)
    os.write(ready_w, b"u")
    os.close(ready_w)
    reply = os.read(go_r, 4096).decode()
    os.close(go_r)
    if reply != "ok":
        raise NamespaceError(reply or "the id maps were not written")
    os.setresgid(0, 0, 0)
    os.setgroups([])
    os.setresuid(0, 0, 0)
    _unshare(CLONE_NEWNS | CLONE_NEWPID)
    pid = os.fork()
    if pid == 0:
        _exit(lambda: _pid1(runner, body), on_error)
    with forwarded_signals(pid):
        return _wait(pid)


def _pid1(runner: Runner, body: Callable[[], int]) -> int:
    """First process of the PID namespace: mounts stay in this namespace,
    and /proc shows this namespace (the build kills what it started in the
    root by the PIDs it reads there)."""
    runner.run(["mount", "--make-rprivate", "/"], what="making the namespace's mounts private")
    with _binfmt_kept(runner):
        runner.run(["mount", "-t", "proc", "proc", "/proc"], what="mounting the namespace's /proc")
    return body()


@contextlib.contextmanager
def _binfmt_kept(runner: Runner) -> Iterator[None]:
    """The host's binfmt_misc stays at its place over the new /proc, for
    tools that read it.  Mounting binfmt_misc here instead would give this
    namespace its own empty instance, and foreign binaries would not run."""
    if not os.path.ismount(BINFMT):
        yield
        return
    keep = tempfile.mkdtemp(prefix="vmdebootstrap-binfmt-")
    try:
        runner.run(["mount", "--bind", BINFMT, keep], what="keeping binfmt_misc")
        yield
        # mount(8) moves it, then complains about a follow-up it may not do
        # here: whether the move happened is what counts.
        moved = runner.run(["mount", "--move", keep, BINFMT], check=False, label="mount")
        if not os.path.ismount(BINFMT):
            log.warning("binfmt_misc is not visible in the build's namespace: %s",
                        " ".join(moved.tail))
    finally:
        if os.path.ismount(keep):
            runner.run(["umount", "--lazy", keep], check=False, label="umount")
        with contextlib.suppress(OSError):
            os.rmdir(keep)


def _exit(run: Callable[[], int], on_error: Callable[[BaseException], int]) -> None:
    """End a forked process with ``run``'s exit code, never returning into
    the caller's stack (its cleanups belong to the parent)."""
    code = 1
    try:
        try:
            code = run()
        except BaseException as exc:
            code = on_error(exc)
    finally:
        logging.shutdown()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _wait(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        code = os.waitstatus_to_exitcode(status)
        return code if code >= 0 else 128 - code


@contextlib.contextmanager
def forwarded_signals(pid: int) -> Iterator[None]:
    """While ``pid`` runs: Ctrl-C reaches it from the terminal (it is in
    the same process group) and is ignored here; kill and a hang-up are
    passed on, so that it unwinds its build and this process waits."""
    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM,
                                                      signal.SIGHUP)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
