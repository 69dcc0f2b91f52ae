"""root/initramfs.py: update-initramfs held off while apt installs, then run
once per kernel; the stand-in never stays in a root; in a foreign root the
host's tools stand in, and an initramfs that holds one is made again."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from tests.fakes import RecordingRunner
from vmdebootstrap.host.run import Result
from vmdebootstrap.plan import Plan
from vmdebootstrap.root import initramfs

PlanOf = Callable[..., Plan]
ASIDE = initramfs.UPDATE_INITRAMFS_ASIDE.lstrip("/")
REAL = initramfs.UPDATE_INITRAMFS.lstrip("/")


class DivertingRunner(RecordingRunner):
    """Does what dpkg-divert --rename --remove does to the root's files."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.envs: list[Mapping[str, str] | None] = []

    def run(self, argv: Sequence[str | os.PathLike[str]], **kw: object) -> Result:
        result = super().run(argv, **kw)  # type: ignore[arg-type]
        self.envs.append(kw.get("env"))  # type: ignore[arg-type]
        if "dpkg-divert" in self.calls[-1] and (self.root / ASIDE).exists():
            (self.root / ASIDE).rename(self.root / REAL)
        return result


def held_root(tmp_path: Path, *, initramfs_tools: bool, kernels: tuple[str, ...] = ()) -> Path:
    """A root as mmdebstrap leaves it: the stand-in in place, the real
    update-initramfs diverted aside when initramfs-tools was installed."""
    root = tmp_path / "root"
    (root / "usr/sbin").mkdir(parents=True)
    (root / REAL).write_text("#!/bin/sh\nexit 0\n")
    if initramfs_tools:
        (root / ASIDE).write_text("#!/bin/sh\n# the real one\n")
    for version in kernels:
        (root / "lib/modules" / version).mkdir(parents=True)
        (root / "boot").mkdir(exist_ok=True)
        (root / f"boot/vmlinuz-{version}").write_bytes(b"kernel")
    (root / "lib/modules/6.1.0-no-image").mkdir(parents=True)  # modules without a kernel
    (root / "dev").mkdir()
    (root / "dev/null").touch()  # as the bootstrap made it: chroot_mounts makes no nodes
    return root


def test_the_hold_hook_diverts_to_a_stand_in(tmp_path: Path) -> None:
    """Run the hook as mmdebstrap does, with a chroot that only records."""
    hook = initramfs.hold_hook().removeprefix("--essential-hook=")
    root = tmp_path / "root"
    (root / "usr/sbin").mkdir(parents=True)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "chroot").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/chroot.log\n')
    (fake / "chroot").chmod(0o755)
    subprocess.run(["sh", "-c", hook, "sh", str(root)], check=True, timeout=10,
                   env={"PATH": f"{fake}:/usr/bin:/bin"})
    assert (tmp_path / "chroot.log").read_text().split() == [
        str(root), "dpkg-divert", "--quiet", "--local", "--divert",
        initramfs.UPDATE_INITRAMFS_ASIDE, "--add", initramfs.UPDATE_INITRAMFS]
    assert (root / REAL).read_text() == "#!/bin/sh\nexit 0\n"
    assert os.access(root / REAL, os.X_OK)


def test_without_initramfs_tools_the_stand_in_goes_and_nothing_is_made(
        plan_of: PlanOf, tmp_path: Path) -> None:
    root = held_root(tmp_path, initramfs_tools=False)
    runner = DivertingRunner(root)
    initramfs.make_initramfs(plan_of("--tarball", "r.tar", "--no-kernel"), runner, root)
    assert not (root / REAL).exists()
    assert runner.calls == [["chroot", str(root), "dpkg-divert", "--quiet", "--local",
                             "--rename", "--remove", initramfs.UPDATE_INITRAMFS]]


def test_each_kernel_gets_its_initramfs_once(plan_of: PlanOf, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vmdebootstrap.host.chroot.resources.kill_processes_in",
                        lambda root: [])
    root = held_root(tmp_path, initramfs_tools=True, kernels=("6.1.0-9-amd64", "6.1.0-10-amd64"))
    (root / "boot/initrd.img-6.1.0-10-amd64").write_bytes(b"made by the postinst")
    runner = DivertingRunner(root)
    initramfs.make_initramfs(plan_of("--tarball", "r.tar"), runner, root)
    assert (root / REAL).read_text() == "#!/bin/sh\n# the real one\n"
    updates = [c[2:] for c in runner.calls if c[:3] == ["chroot", str(root), "update-initramfs"]]
    assert updates == [["update-initramfs", "-u", "-k", "6.1.0-10-amd64"],
                       ["update-initramfs", "-c", "-k", "6.1.0-9-amd64"]]
    mounted = [c[-1] for c in runner.calls if c[0] == "mount"]
    assert str(root / "proc") in mounted  # in the chroot's mounts
    assert not any("/.vmdbn" in " ".join(c) for c in runner.calls)  # a native root


def test_a_foreign_initramfs_holding_a_host_tool_is_made_again(
        plan_of: PlanOf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    @contextlib.contextmanager
    def helped(runner: object, root: Path):  # type: ignore[no-untyped-def]
        yield {"LD_LIBRARY_PATH": "/.vmdbn/lib"}

    monkeypatch.setattr(initramfs, "native_tools", helped)
    monkeypatch.setattr(initramfs, "carries_host_tools", lambda initrd, runner: True)
    root = held_root(tmp_path, initramfs_tools=True, kernels=("6.1.0-9-arm64",))
    plan = plan_of("--tarball", "r.tar", "--arch", "arm64")
    runner = DivertingRunner(root)
    initramfs.update(plan, runner, root, ["-c", "-k", "6.1.0-9-arm64"])
    assert [c[2] for c in runner.calls] == ["update-initramfs", "update-initramfs"]
    first, again = runner.envs
    assert first is not None and first["LD_LIBRARY_PATH"] == "/.vmdbn/lib"
    assert again is not None and "LD_LIBRARY_PATH" not in again  # the target's own tools
