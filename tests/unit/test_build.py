"""build.py: failure injection without root.

The build runs for real against a fake runner that keeps a fake mount table
(resources.MOUNTINFO points at a file in tmp_path): each `mount` adds a line,
each `umount` removes one.  A failure is injected at each stage; the build's
own exception must come out unchanged, the work directory must be gone, no
output may exist under its final name, and every mount must have been undone
in reverse order.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.fakes import RecordingRunner
from vmdebootstrap import build as build_module
from vmdebootstrap.errors import BuildError
from vmdebootstrap.host import chroot, resources
from vmdebootstrap.host.run import CommandError, Result
from vmdebootstrap.outputs import files as outputs
from vmdebootstrap.plan import Plan
from vmdebootstrap.root import bootstrap as bs
from vmdebootstrap.root import configure as cf

PlanOf = Callable[..., Plan]
Fail = Callable[[list[str]], BaseException | None]

CHROOT_MOUNTS = ["proc", "sys", "dev/pts", "run"]


class MountingRunner(RecordingRunner):
    """Records argv; mount/umount edit the fake mount table; ``fail`` can
    turn any command into an exception."""

    def __init__(self, table: Path, fail: Fail | None = None) -> None:
        super().__init__()
        self.table = table
        self.fail = fail
        self.lines: list[str] = []
        self.events: list[tuple[str, str]] = []
        self._next = 500
        table.write_text("")

    def run(self, argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> Result:
        result = super().run(argv, **kwargs)  # type: ignore[arg-type]
        args = self.calls[-1]
        if self.fail is not None:
            exc = self.fail(args)
            if exc is not None:
                raise exc
        if args[0] == "mount":
            self.mount(args[-1])
        elif args[0] == "umount":
            target = args[-1]
            if target not in resources.mount_points(self.table.read_text()):
                return Result(32)
            self.events.append(("umount", target))
            for i in range(len(self.lines) - 1, -1, -1):
                if resources.mount_points(self.lines[i])[0] == target:
                    del self.lines[i]
                    break
            self._write()
        return result

    def mount(self, target: str) -> None:
        self._next += 1
        escaped = target.replace(" ", "\\040")
        self.lines.append(f"{self._next} 27 0:{self._next} / {escaped} rw - tmpfs x rw")
        self.events.append(("mount", target))
        self._write()

    def _write(self) -> None:
        self.table.write_text("".join(line + "\n" for line in self.lines))

    def mounted(self) -> list[str]:
        return resources.mount_points(self.table.read_text())


@dataclasses.dataclass
class Rig:
    tmp: Path  # tempfile.tempdir: the work directory is made here
    out: Path
    table: Path
    host_resolv: Path

    def runner(self, fail: Fail | None = None) -> MountingRunner:
        return MountingRunner(self.table, fail)


def fake_bootstrap(plan: Plan, runner: object, root: Path, *rest: object) -> None:
    """What mmdebstrap leaves: enough of a root for configure to work on."""
    for d in ("etc/apt/sources.list.d", "dev", "usr/sbin", "usr/lib/systemd/system",
              "var/lib/apt/lists", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "dev/null").write_text("")  # a real one needs mknod: root only
    (root / "etc/shadow").write_text("root:*:19800:0:99999:7:::\n")
    (root / "etc/resolv.conf").symlink_to("../run/systemd/resolve/stub-resolv.conf")
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")


FAKE_RELEASE = b"Origin: Debian\nSuite: trixie\nDate: Sat, 01 Nov 2025 10:00:00 UTC\n"


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: Path) -> Rig:
    base = Path(os.path.realpath(tmp_path))
    tmp = base / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    table = base / "mountinfo"
    monkeypatch.setattr(resources, "MOUNTINFO", table)
    monkeypatch.setattr(resources, "kill_processes_in", lambda root: [])
    monkeypatch.setattr(resources, "processes_in_root", lambda root, proc=None: [])
    host_resolv = base / "host-resolv.conf"
    host_resolv.write_text("nameserver 192.0.2.53\n")
    real_resolv = chroot.host_resolv_conf
    monkeypatch.setattr(build_module, "host_resolv_conf",
                        lambda root: real_resolv(root, host=host_resolv))
    # No cache, no network: the bootstrap only lays out a fake root.
    monkeypatch.setattr(bs, "bootstrap", fake_bootstrap)
    monkeypatch.setattr(build_module.MirrorRelease, "data", lambda self: FAKE_RELEASE)
    return Rig(tmp=tmp, out=out, table=table, host_resolv=host_resolv)


def tarball_plan(plan_of: PlanOf, rig: Rig, *extra: str, name: str = "root.tar.gz") -> Plan:
    plan = plan_of("--tarball", str(rig.out / name), *extra)
    fields = {f.name for f in dataclasses.fields(plan.settings)}
    private = {k: v for k, v in (("no_cache", True), ("cache_dir", str(rig.tmp / "cache")))
               if k in fields}
    return dataclasses.replace(plan, settings=plan.settings.with_values(**private),
                               cache_dir=None)


def assert_clean(rig: Rig, runner: MountingRunner) -> None:
    assert list(rig.tmp.iterdir()) == [], "the work directory was left behind"
    assert list(rig.out.iterdir()) == [], "an output (or its temp file) was left"
    assert runner.mounted() == []
    assert_lifo(runner.events)


def assert_lifo(events: list[tuple[str, str]]) -> None:
    """Every umount undoes the most recent mount still in place."""
    stack: list[str] = []
    for kind, target in events:
        if kind == "mount":
            stack.append(target)
        else:
            assert stack and stack[-1] == target, f"unmounted {target} before {stack[-1:]}"
            stack.pop()
    assert stack == []


def chroot_session(events: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(kind, target.rsplit("/root/", 1)[1]) for kind, target in events]


def expected_chroot_session(mounted: Sequence[str]) -> list[tuple[str, str]]:
    return [("mount", m) for m in mounted] + [("umount", m) for m in reversed(mounted)]


def raising(exc: BaseException) -> Callable[..., None]:
    def fail(*args: object, **kwargs: object) -> None:
        raise exc
    return fail


# --- success -------------------------------------------------------------------------


def test_successful_tarball_build(plan_of: PlanOf, rig: Rig) -> None:
    runner = rig.runner()
    plan = tarball_plan(plan_of, rig)
    written = build_module.build(plan, runner)
    final = rig.out / "root.tar.gz"
    beside = rig.out / "root.tar.gz.manifest.json"
    assert written == [final, rig.out / "root.tar.gz.sha256", beside,
                       rig.out / "root.tar.gz.spdx.json"]
    assert sorted(p.name for p in rig.out.iterdir()) == [
        "root.tar.gz", "root.tar.gz.manifest.json", "root.tar.gz.sha256",
        "root.tar.gz.spdx.json"]
    recipe = json.loads(beside.read_text())
    assert recipe["output"] == "tarball" and recipe["output_file"]["name"] == "root.tar.gz"
    assert recipe["mirror"]["date_epoch"] == 1761991200
    assert list(rig.tmp.iterdir()) == []
    assert runner.mounted() == []
    assert chroot_session(runner.events) == expected_chroot_session(CHROOT_MOUNTS)
    tar = [c for c in runner.calls if c[0] == "tar"]
    assert [c[1] for c in tar] == ["--create", "--list"]  # written, then read back


def test_tarball_is_compressed_as_its_name_says(plan_of: PlanOf, rig: Rig) -> None:
    runner = rig.runner()
    build_module.build(tarball_plan(plan_of, rig), runner)
    tar = next(c for c in runner.calls if c[0] == "tar")
    assert "--use-compress-program=gzip -n" in tar


# --- failure at each stage -------------------------------------------------------------


def test_bootstrap_failure(plan_of: PlanOf, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    exc = CommandError(["mmdebstrap", "trixie"], 1, ["E: Couldn't download"],
                       "bootstrapping with mmdebstrap failed")
    monkeypatch.setattr(bs, "bootstrap", raising(exc))
    runner = rig.runner()
    message = str(exc)
    with pytest.raises(CommandError) as info:
        build_module.build(tarball_plan(plan_of, rig), runner)
    assert info.value is exc and str(info.value) == message
    assert_clean(rig, runner)
    assert runner.events == []


def test_chroot_mount_failure_unmounts_what_was_mounted(plan_of: PlanOf, rig: Rig) -> None:
    exc = CommandError(["mount", "-t", "sysfs"], 32, ["mount: permission denied"],
                       "mounting sysfs failed")

    def fail(argv: list[str]) -> BaseException | None:
        return exc if argv[0] == "mount" and "sysfs" in argv else None

    runner = rig.runner(fail)
    with pytest.raises(CommandError) as info:
        build_module.build(tarball_plan(plan_of, rig), runner)
    assert info.value is exc
    assert_clean(rig, runner)
    assert chroot_session(runner.events) == expected_chroot_session(["proc"])


@pytest.mark.parametrize("error", [
    BuildError("creating user alice failed"),
    CommandError(["chroot", "/r", "useradd", "alice"], 9, ["useradd: user exists"]),
    KeyboardInterrupt(),
])
def test_configure_failure(plan_of: PlanOf, rig: Rig, monkeypatch: pytest.MonkeyPatch,
                           error: BaseException) -> None:
    monkeypatch.setattr(cf, "configure_accounts", raising(error))
    runner = rig.runner()
    with pytest.raises(type(error)) as info:
        build_module.build(tarball_plan(plan_of, rig), runner)
    assert info.value is error
    assert_clean(rig, runner)
    assert chroot_session(runner.events) == expected_chroot_session(CHROOT_MOUNTS)


@pytest.fixture
def hook(tmp_path: Path) -> Path:
    path = tmp_path / "hooks" / "customise.sh"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)
    return path


def test_hook_failure(plan_of: PlanOf, rig: Rig, hook: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    exc = BuildError(f"customisation hook {hook} failed: exited with status 1")
    monkeypatch.setattr(build_module, "run_hook", raising(exc))
    runner = rig.runner()
    with pytest.raises(BuildError) as info:
        build_module.build(tarball_plan(plan_of, rig, "--customize", str(hook)), runner)
    assert info.value is exc
    assert_clean(rig, runner)


def test_hook_that_fails_and_leaves_mounts(plan_of: PlanOf, rig: Rig, hook: Path) -> None:
    """The real run_hook: the hook bind-mounts into the root, then exits 1."""
    def fail(argv: list[str]) -> BaseException | None:
        if argv[0] == str(hook.resolve()):
            root = Path(argv[1])
            runner.mount(str(root / "mnt/host"))
            runner.mount(str(root / "mnt/host/dev"))
            return CommandError(argv, 1, ["hook: E: no space left"])
        return None

    runner = rig.runner(fail)
    with pytest.raises(BuildError) as info:
        build_module.build(tarball_plan(plan_of, rig, "--customize", str(hook)), runner)
    assert "customisation hook" in str(info.value)
    assert "exited with status 1" in str(info.value)
    assert "no space left" in str(info.value)
    assert_clean(rig, runner)
    umounts = [t for k, t in runner.events if k == "umount"]
    assert umounts[-2].endswith("/mnt/host/dev") and umounts[-1].endswith("/mnt/host")


def test_initramfs_failure(plan_of: PlanOf, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    exc = CommandError(["chroot", "/r", "update-initramfs"], 1, ["E: mkinitramfs failure"],
                       "updating the initramfs failed")
    monkeypatch.setattr(cf, "update_initramfs", raising(exc))
    runner = rig.runner()
    plan = tarball_plan(plan_of, rig, "--enable-dhcp", "--no-systemd-networkd")
    assert cf.needs_initramfs_update(plan)
    with pytest.raises(CommandError) as info:
        build_module.build(plan, runner)
    assert info.value is exc
    assert_clean(rig, runner)
    # configure's chroot mounts, then the initramfs step's, each undone in reverse.
    assert chroot_session(runner.events) == (expected_chroot_session(CHROOT_MOUNTS)
                                             + expected_chroot_session(CHROOT_MOUNTS))


def test_write_outputs_failure(plan_of: PlanOf, rig: Rig,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    exc = CommandError(["tar", "--create"], 2, ["tar: write error: No space left on device"],
                       "writing the tarball failed")
    seen: list[Path] = []

    def write_tarball(runner: object, root: Path, output: Path, name: str | None = None,
                      epoch: int | None = None) -> None:
        output.write_bytes(b"half a tarball")
        seen.append(output)
        raise exc

    monkeypatch.setattr(outputs, "write_tarball", write_tarball)
    runner = rig.runner()
    with pytest.raises(CommandError) as info:
        build_module.build(tarball_plan(plan_of, rig, name="root.tar"), runner)
    assert info.value is exc
    assert seen and seen[0].parent == rig.out and seen[0].name != "root.tar"
    assert_clean(rig, runner)
    assert chroot_session(runner.events) == expected_chroot_session(CHROOT_MOUNTS)


def test_write_outputs_failure_keeps_an_older_output(plan_of: PlanOf, rig: Rig,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    old = rig.out / "root.tar"
    old.write_bytes(b"last week's build")
    monkeypatch.setattr(outputs, "write_tarball", raising(BuildError("tar failed")))
    runner = rig.runner()
    with pytest.raises(BuildError, match="tar failed"):
        build_module.build(tarball_plan(plan_of, rig, name="root.tar"), runner)
    assert [p.name for p in rig.out.iterdir()] == ["root.tar"]
    assert old.read_bytes() == b"last week's build"
    assert list(rig.tmp.iterdir()) == []


def test_squash_output_failure_leaves_no_directory(plan_of: PlanOf, rig: Rig) -> None:
    """The real squash writer on a root with no kernel in /boot."""
    plan = plan_of("--squash", str(rig.out / "live"))
    plan = dataclasses.replace(plan, settings=tarball_plan(plan_of, rig).settings.with_values(
        tarball=None, squash=str(rig.out / "live")), cache_dir=None)
    runner = rig.runner()
    with pytest.raises(BuildError, match="no kernel in"):
        build_module.build(plan, runner)
    assert_clean(rig, runner)
    assert not any(c[0] == "mksquashfs" for c in runner.calls)
