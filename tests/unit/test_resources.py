"""resources.py without root: injected mount tables, a fake umount, a fake /proc.

The fake umount behaves like the kernel where it matters: unmounting a mount
point that still has mounts below it fails (EBUSY) unless it is --lazy, which
detaches the whole subtree.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests.fakes import RecordingRunner
from vmdebootstrap.errors import BuildError
from vmdebootstrap.host import resources
from vmdebootstrap.host.chroot import POLICY_RC_D, daemons_blocked, host_resolv_conf
from vmdebootstrap.host.resources import (
    mount_points,
    mounts_under,
    processes_in_root,
    remove_tree,
    temp_dir,
    unmount_under,
)
from vmdebootstrap.host.run import Result

# The shape of /proc/self/mountinfo on a Debian host while a build runs in
# "/srv/build dir" (a space, escaped as \040 by the kernel).
HOST_MOUNTINFO = r"""22 27 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
23 27 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
24 27 0:6 / /dev rw,nosuid,relatime shared:8 - devtmpfs udev rw,size=4015436k,mode=755
25 24 0:23 / /dev/pts rw,nosuid,noexec,relatime shared:9 - devpts devpts rw,gid=5,mode=620
27 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro
30 27 8:3 / /srv rw,relatime shared:20 - ext4 /dev/sda3 rw
200 30 7:0 / /srv/build\040dir/root rw,relatime shared:100 - ext4 /dev/loop0p2 rw
201 200 7:1 / /srv/build\040dir/root/boot/efi rw,relatime shared:101 - vfat /dev/loop0p1 rw
202 200 0:60 / /srv/build\040dir/root/proc rw,relatime shared:102 - proc proc rw
203 200 0:61 / /srv/build\040dir/root/sys ro,relatime shared:103 - sysfs sysfs ro
204 200 0:62 / /srv/build\040dir/root/dev/pts rw,relatime shared:104 - devpts devpts rw
205 200 0:63 / /srv/build\040dir/root/run rw,relatime shared:105 - tmpfs tmpfs rw,mode=755
206 205 0:64 / /srv/build\040dir/root/run rw,relatime shared:106 - tmpfs tmpfs rw
207 202 0:65 / /srv/build\040dir/root/proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw
208 30 8:4 / /srv/build\040dir/root2 rw,relatime shared:107 - ext4 /dev/sdb1 rw
"""

BUILD = "/srv/build dir/root"


def escape(path: str) -> str:
    return (path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")
            .replace("\n", "\\012"))


def mount_line(n: int, target: str, parent: int = 27) -> str:
    return f"{n} {parent} 0:{n} / {escape(target)} rw,relatime - tmpfs tmpfs rw"


# --- parsing -------------------------------------------------------------------


def test_mount_points_unescape_octal() -> None:
    points = mount_points(HOST_MOUNTINFO)
    assert points[:5] == ["/proc", "/sys", "/dev", "/dev/pts", "/"]
    assert BUILD in points
    assert "/srv/build dir/root/boot/efi" in points
    weird = mount_line(1, "/mnt/a\tb\\c\nd") + "\n"
    assert mount_points(weird) == ["/mnt/a\tb\\c\nd"]


def test_mount_points_ignores_blank_and_short_lines() -> None:
    assert mount_points("\n\n22 27 0:21\n") == []


def test_mounts_under_deepest_first_with_stacked_mounts() -> None:
    found = mounts_under(BUILD, HOST_MOUNTINFO)
    root = BUILD
    assert found[0] == f"{root}/proc/sys/fs/binfmt_misc"
    assert set(found) == {root, f"{root}/boot/efi", f"{root}/proc", f"{root}/sys",
                          f"{root}/dev/pts", f"{root}/run", f"{root}/proc/sys/fs/binfmt_misc"}
    assert found.count(f"{root}/run") == 2  # both layers of the stacked tmpfs
    assert found[-1] == root
    # Every mount comes before anything that is its ancestor.
    for i, p in enumerate(found):
        for later in found[i + 1:]:
            assert not later.startswith(p + "/"), f"{later} after its parent {p}"


def test_mounts_under_excludes_siblings_with_the_same_prefix() -> None:
    assert "/srv/build dir/root2" not in mounts_under(BUILD, HOST_MOUNTINFO)
    assert mounts_under("/srv/build dir/root2", HOST_MOUNTINFO) == ["/srv/build dir/root2"]


def test_mounts_under_trailing_slash_and_nothing_mounted() -> None:
    assert mounts_under(BUILD + "/", HOST_MOUNTINFO)[-1] == BUILD
    assert mounts_under("/srv/elsewhere", HOST_MOUNTINFO) == []


def test_mounts_under_resolves_symlinks(tmp_path: Path) -> None:
    real = Path(os.path.realpath(tmp_path)) / "real"
    (real / "proc").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    table = mount_line(50, str(real / "proc")) + "\n"
    assert mounts_under(link, table) == [str(real / "proc")]


def test_mount_points_reads_the_real_table_by_default() -> None:
    assert "/" in mount_points()


# --- unmount_under --------------------------------------------------------------


class FakeMounts:
    """A mutable mount table and a runner whose umount edits it."""

    def __init__(self, text: str, busy: Sequence[str] = (), stuck: Sequence[str] = ()) -> None:
        self.lines = text.splitlines()
        self.busy = set(busy)  # plain umount fails, --lazy works
        self.stuck = set(stuck)  # even --lazy fails
        self.calls: list[list[str]] = []

    def mountinfo(self) -> str:
        return "".join(line + "\n" for line in self.lines)

    def points(self) -> list[str]:
        return mount_points(self.mountinfo())

    def run(self, argv: Sequence[str | os.PathLike[str]], **_: object) -> Result:
        args = [os.fspath(a) for a in argv]
        self.calls.append(args)
        assert args[0] == "umount"
        target = args[-1]
        lazy = "--lazy" in args
        points = self.points()
        if target not in points or target in self.stuck:
            return Result(32)
        below = [p for p in points if p.startswith(target + "/")]
        if not lazy and (below or target in self.busy):
            return Result(32)  # EBUSY: children first
        if lazy:
            self._remove_below(target)
        self._remove_top(target)
        return Result(0)

    def _remove_top(self, target: str) -> None:
        for i in range(len(self.lines) - 1, -1, -1):
            if mount_points(self.lines[i])[0] == target:
                del self.lines[i]
                return

    def _remove_below(self, target: str) -> None:
        self.lines = [ln for ln in self.lines
                      if not mount_points(ln)[0].startswith(target + "/")]

    def umounted(self) -> list[str]:
        return [c[-1] for c in self.calls if "--lazy" not in c]


def under_build(points: list[str]) -> list[str]:
    return [p for p in points if p == BUILD or p.startswith(BUILD + "/")]


def test_unmount_under_children_before_parents() -> None:
    fake = FakeMounts(HOST_MOUNTINFO)
    failed = unmount_under(BUILD, fake, mountinfo=fake.mountinfo)
    assert failed == []
    assert under_build(fake.points()) == []
    assert "/srv/build dir/root2" in fake.points()  # the sibling is untouched
    assert "/srv" in fake.points() and "/proc" in fake.points()
    done = fake.umounted()
    assert done[-1] == BUILD
    assert done.index(f"{BUILD}/proc/sys/fs/binfmt_misc") < done.index(f"{BUILD}/proc")
    assert done.count(f"{BUILD}/run") == 2
    assert all(c[:1] == ["umount"] and "--lazy" not in c for c in fake.calls)


def test_unmount_under_keeps_the_root_with_include_self_false() -> None:
    fake = FakeMounts(HOST_MOUNTINFO)
    assert unmount_under(BUILD, fake, mountinfo=fake.mountinfo, include_self=False) == []
    assert under_build(fake.points()) == [BUILD]
    assert BUILD not in fake.umounted()


def test_unmount_under_retries_busy_mounts_lazily() -> None:
    fake = FakeMounts(HOST_MOUNTINFO, busy=[f"{BUILD}/run"])
    assert unmount_under(BUILD, fake, mountinfo=fake.mountinfo) == []
    assert ["umount", "--lazy", f"{BUILD}/run"] in fake.calls
    assert under_build(fake.points()) == []


def test_unmount_under_reports_what_it_could_not_unmount() -> None:
    stuck = f"{BUILD}/boot/efi"
    fake = FakeMounts(HOST_MOUNTINFO, stuck=[stuck])
    failed = unmount_under(BUILD, fake, mountinfo=fake.mountinfo)
    assert stuck in failed
    assert ["umount", "--lazy", stuck] in fake.calls
    # The parent could only go lazily (its child is stuck), and everything
    # else went normally.
    assert under_build(fake.points()) in ([stuck], [])
    assert f"{BUILD}/proc" not in fake.points()


def test_unmount_under_stops_when_nothing_is_mounted() -> None:
    fake = FakeMounts(HOST_MOUNTINFO)
    assert unmount_under("/srv/elsewhere", fake, mountinfo=fake.mountinfo) == []
    assert fake.calls == []


def test_unmount_under_many_mounts_are_all_unmounted_or_reported() -> None:
    lines = [mount_line(100, BUILD, 30)]
    lines += [mount_line(101 + i, f"{BUILD}/m{i:03d}", 100) for i in range(80)]
    fake = FakeMounts("\n".join(lines))
    failed = unmount_under(BUILD, fake, mountinfo=fake.mountinfo)
    left = under_build(fake.points())
    assert left == [] or sorted(failed) == sorted(set(left))


# --- remove_tree -------------------------------------------------------------------


def make_tree(top: Path) -> None:
    (top / "etc/apt").mkdir(parents=True)
    (top / "etc/apt/sources.list").write_text("deb x y z\n")
    (top / "dev").mkdir()
    (top / "dev/ptmx").symlink_to("pts/ptmx")  # dangling
    (top / "usr/bin").mkdir(parents=True)
    (top / "usr/bin/tool").write_bytes(b"\x7fELF")
    (top / "usr/bin/link").symlink_to("tool")


def test_remove_tree_removes_a_normal_tree(tmp_path: Path) -> None:
    top = tmp_path / "work"
    make_tree(top)
    remove_tree(top, mountinfo="")
    assert not top.exists()
    assert list(tmp_path.iterdir()) == []


def test_remove_tree_missing_path_is_fine(tmp_path: Path) -> None:
    remove_tree(tmp_path / "nothing", mountinfo="")


def test_remove_tree_refuses_when_something_is_mounted_below(tmp_path: Path) -> None:
    top = Path(os.path.realpath(tmp_path)) / "work dir"
    make_tree(top)
    (top / "root/proc").mkdir(parents=True)
    table = HOST_MOUNTINFO + mount_line(300, str(top / "root/proc")) + "\n"
    with pytest.raises(BuildError) as info:
        remove_tree(top, mountinfo=table)
    assert str(top / "root/proc") in str(info.value)
    assert "refusing to remove" in str(info.value)
    assert (top / "etc/apt/sources.list").exists()  # nothing deleted


def test_remove_tree_does_not_follow_symlinks_out(tmp_path: Path) -> None:
    outside = tmp_path / "host"
    outside.mkdir()
    canary = outside / "canary"
    canary.write_text("still here")
    (tmp_path / "host-file").write_text("me too")
    top = tmp_path / "work"
    make_tree(top)
    (top / "dev/host").symlink_to(outside)
    (top / "etc/host-abs").symlink_to(str(outside) + "/")
    (top / "etc/file-link").symlink_to(tmp_path / "host-file")
    remove_tree(top, mountinfo="")
    assert not top.exists()
    assert canary.read_text() == "still here"
    assert (tmp_path / "host-file").read_text() == "me too"


def test_remove_tree_on_a_symlink_removes_only_the_link(tmp_path: Path) -> None:
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "canary").write_text("x")
    link = tmp_path / "link"
    link.symlink_to(outside)
    remove_tree(link, mountinfo="")
    assert not link.is_symlink()
    assert (outside / "canary").exists()


def _fake_other_device(monkeypatch: pytest.MonkeyPatch, other: Path) -> None:
    """Make ``other`` look like a directory on another device (a bind mount
    from another mount namespace, say, that mountinfo did not show)."""
    real_scandir = os.scandir

    class Entry:
        def __init__(self, entry: os.DirEntry[str]) -> None:
            self._e = entry
            self.path = entry.path
            self.name = entry.name

        def stat(self, follow_symlinks: bool = True) -> os.stat_result:
            st = self._e.stat(follow_symlinks=follow_symlinks)
            if self.path == str(other):
                fields = list(st)
                fields[stat.ST_DEV] = st.st_dev + 1
                return os.stat_result(fields)
            return st

    def scandir(path: str | os.PathLike[str]) -> list[Entry]:
        with real_scandir(path) as it:
            return [Entry(e) for e in it]

    monkeypatch.setattr(resources.os, "scandir", scandir)


def test_remove_tree_refuses_another_filesystem(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    top = tmp_path / "work"
    other = top / "hostdev"
    other.mkdir(parents=True)
    (other / "keep").write_text("x")
    (top / "file").write_text("x")
    _fake_other_device(monkeypatch, other)
    with pytest.raises(BuildError) as info:
        remove_tree(top, mountinfo="")
    assert str(other) in str(info.value)
    assert (other / "keep").exists()


def test_remove_tree_never_empties_a_nested_other_filesystem(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    top = tmp_path / "work"
    other = top / "root/dev"
    other.mkdir(parents=True)
    (other / "null").write_text("x")
    _fake_other_device(monkeypatch, other)
    with pytest.raises((BuildError, OSError)):
        remove_tree(top, mountinfo="")
    assert (other / "null").exists()


def test_remove_tree_nested_other_filesystem_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    top = tmp_path / "work"
    other = top / "root/dev"
    other.mkdir(parents=True)
    (other / "null").write_text("x")
    _fake_other_device(monkeypatch, other)
    with pytest.raises(BuildError, match="refusing to remove other filesystems") as info:
        remove_tree(top, mountinfo="")
    assert str(other) in str(info.value)


# --- temp_dir ----------------------------------------------------------------------


def test_temp_dir_is_removed_on_success_and_failure(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(resources, "MOUNTINFO", tmp_path / "mountinfo")
    (tmp_path / "mountinfo").write_text(HOST_MOUNTINFO)
    runner = RecordingRunner()
    with temp_dir(runner) as work:
        assert work.parent == tmp_path
        assert stat.S_IMODE(work.stat().st_mode) == 0o755
        (work / "root/etc").mkdir(parents=True)
    assert not work.exists()
    with pytest.raises(KeyError), temp_dir(runner) as work:
        (work / "file").write_text("x")
        raise KeyError("boom")
    assert not work.exists()
    assert runner.calls == []


def test_temp_dir_keep_and_leftover_mounts(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    base = Path(os.path.realpath(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    with pytest.raises(BuildError), \
            temp_dir(RecordingRunner(), keep_on_failure=True) as kept:
        raise BuildError("the hook failed")
        pass
    assert kept.is_dir()

    table = base / "mountinfo"
    monkeypatch.setattr(resources, "MOUNTINFO", table)
    table.write_text("")
    fake = FakeMounts("")
    with pytest.raises(BuildError, match="could not unmount"), temp_dir(fake) as work:
        (work / "root/proc").mkdir(parents=True)
        fake.lines.append(mount_line(400, str(work / "root/proc")))
        fake.stuck.add(str(work / "root/proc"))
        table.write_text(fake.mountinfo())
    # Could not unmount: an error, and the directory is left alone, not emptied.
    assert (work / "root/proc").is_dir()


def test_temp_dir_keeps_the_build_error_primary(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    table = tmp_path / "mountinfo"
    table.write_text("")
    monkeypatch.setattr(resources, "MOUNTINFO", table)

    def removal_fails(path: object, mountinfo: str | None = None) -> None:
        raise OSError(39, "Directory not empty")

    monkeypatch.setattr(resources, "remove_tree", removal_fails)
    with pytest.raises(BuildError, match="bootstrapping failed"), \
            temp_dir(RecordingRunner()):
        raise BuildError("bootstrapping failed")


# --- daemons_blocked ---------------------------------------------------------------


def test_daemons_blocked_creates_and_removes_policy_rc_d(tmp_path: Path) -> None:
    policy = tmp_path / "usr/sbin/policy-rc.d"
    with daemons_blocked(tmp_path):
        assert policy.read_text() == POLICY_RC_D
        assert "exit 101" in POLICY_RC_D
        assert policy.stat().st_mode & 0o111
    assert not policy.exists()
    with pytest.raises(ValueError), daemons_blocked(tmp_path):
        assert policy.exists()
        raise ValueError
    assert not policy.exists()


def test_daemons_blocked_leaves_an_existing_policy_alone(tmp_path: Path) -> None:
    policy = tmp_path / "usr/sbin/policy-rc.d"
    policy.parent.mkdir(parents=True)
    policy.write_text("#!/bin/sh\n# the image's own\nexit 0\n")
    with daemons_blocked(tmp_path):
        assert "image's own" in policy.read_text()
    assert "image's own" in policy.read_text()


# --- host_resolv_conf --------------------------------------------------------------


@pytest.fixture
def host_resolv(tmp_path: Path) -> Path:
    host = tmp_path / "host-resolv.conf"
    host.write_text("nameserver 192.0.2.53\n")
    return host


def test_host_resolv_conf_replaces_a_dangling_symlink(tmp_path: Path, host_resolv: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    target = root / "etc/resolv.conf"
    target.symlink_to("../run/systemd/resolve/stub-resolv.conf")
    with host_resolv_conf(root, host=host_resolv):
        assert not target.is_symlink()
        assert target.read_text() == "nameserver 192.0.2.53\n"
    assert target.is_symlink()
    assert os.readlink(target) == "../run/systemd/resolve/stub-resolv.conf"
    assert sorted(p.name for p in (root / "etc").iterdir()) == ["resolv.conf"]


def test_host_resolv_conf_restores_on_exception(tmp_path: Path, host_resolv: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    target = root / "etc/resolv.conf"
    target.symlink_to("/run/systemd/resolve/stub-resolv.conf")
    with pytest.raises(RuntimeError), host_resolv_conf(root, host=host_resolv):
        raise RuntimeError("apt failed")
    assert os.readlink(target) == "/run/systemd/resolve/stub-resolv.conf"
    assert sorted(p.name for p in (root / "etc").iterdir()) == ["resolv.conf"]


def test_host_resolv_conf_regular_file_and_missing(tmp_path: Path, host_resolv: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    target = root / "etc/resolv.conf"
    target.write_text("nameserver 198.51.100.1\n")
    with host_resolv_conf(root, host=host_resolv):
        assert target.read_text() == "nameserver 192.0.2.53\n"
    assert target.read_text() == "nameserver 198.51.100.1\n"
    target.unlink()
    with host_resolv_conf(root, host=host_resolv):
        assert target.exists()
    assert not target.exists() and not target.is_symlink()


def test_host_resolv_conf_without_host_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    target = root / "etc/resolv.conf"
    target.symlink_to("../run/resolv.conf")
    with host_resolv_conf(root, host=tmp_path / "no-such-file"):
        assert not target.exists() and not target.is_symlink()
    assert os.readlink(target) == "../run/resolv.conf"


# --- processes_in_root --------------------------------------------------------------


def fake_proc(tmp_path: Path, roots: Mapping[str, str | None]) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    for name, root in roots.items():
        (proc / name).mkdir()
        if root is not None:
            (proc / name / "root").symlink_to(root)
    (proc / "meminfo").write_text("MemTotal: 1 kB\n")
    (proc / "self").symlink_to("100")
    return proc


def test_processes_in_root_with_a_fake_proc(tmp_path: Path) -> None:
    root = Path(os.path.realpath(tmp_path)) / "build/root"
    root.mkdir(parents=True)
    proc = fake_proc(tmp_path, {
        "1": "/",
        "100": str(root),
        "101": str(root / "srv/chroot"),
        "102": str(root) + "2",  # same prefix, another tree
        "103": None,  # no root link: gone, or not ours to read
        "104": "/srv",
    })
    assert sorted(processes_in_root(root, proc=proc)) == [100, 101]
    assert sorted(processes_in_root(str(root) + "/", proc=proc)) == [100, 101]
    assert processes_in_root(tmp_path / "elsewhere", proc=proc) == []


def test_kill_processes_in_nothing_running(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    killed: list[int] = []
    monkeypatch.setattr(resources, "processes_in_root", lambda root, proc=None: [])
    monkeypatch.setattr(resources.os, "kill", lambda pid, sig: killed.append(pid))
    assert resources.kill_processes_in(tmp_path) == []
    assert killed == []


def test_kill_processes_in_stops_what_it_finds(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    running = {4242}
    sent: list[tuple[int, int]] = []

    def kill(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        running.discard(pid)

    monkeypatch.setattr(resources, "processes_in_root", lambda root, proc=None: sorted(running))
    monkeypatch.setattr(resources.os, "kill", kill)
    assert resources.kill_processes_in(tmp_path) == []
    assert sent == [(4242, 15)]
