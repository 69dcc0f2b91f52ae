"""root/hookapt.py: the hook's apt uses the build mirror; the image keeps its own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes import RecordingRunner
from tests.unit.conftest import MIRROR
from vmdebootstrap.plan import Plan
from vmdebootstrap.root.hookapt import ASIDE, build_source_line, build_sources

PlanOf = Callable[..., Plan]
IMAGE_SOURCES = "deb http://apt.example.org/debian trixie main\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc/apt/sources.list.d").mkdir(parents=True)
    (root / "etc/apt/sources.list").write_text(IMAGE_SOURCES)
    (root / "etc/apt/sources.list.d/extra.list").write_text("deb http://extra.example/ x main\n")
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "dev/null").touch()  # chroot_mounts makes no device nodes then
    return root


def test_the_hook_sees_the_build_mirror_with_fresh_lists(plan_of: PlanOf, root: Path,
                                                         out: Path) -> None:
    plan = plan_of("--tarball", str(out / "r.tar"), "--configure-apt",
                   "--apt-mirror", "http://apt.example.org/debian")
    runner = RecordingRunner()
    with build_sources(plan, runner, root):
        assert (root / "etc/apt/sources.list").read_text() == \
            f"deb {MIRROR} {plan.distribution} main\n"
        assert list((root / "etc/apt/sources.list.d").iterdir()) == []
        (root / "var/lib/apt/lists/mirror_Packages").write_text("index")
        # A hook may add a repository for the image.
        (root / "etc/apt/sources.list.d/added.list").write_text("deb http://added/ x main\n")
    updates = [c for c in runner.calls if c[:2] == ["chroot", str(root)]]
    assert updates == [["chroot", str(root), "apt-get", "-q", "-y", "-o", "Dpkg::Use-Pty=0",
                        "-o", "APT::Color=0", "-o", "Acquire::Languages=none", "update"]]
    assert (root / "etc/apt/sources.list").read_text() == IMAGE_SOURCES
    assert sorted(p.name for p in (root / "etc/apt/sources.list.d").iterdir()) == [
        "added.list", "extra.list"]
    assert [p.name for p in (root / "var/lib/apt/lists").iterdir()] == ["partial"]
    assert not (root / ASIDE).exists()


def test_the_image_sources_come_back_when_the_hook_fails(plan_of: PlanOf, root: Path,
                                                        out: Path) -> None:
    plan = plan_of("--tarball", str(out / "r.tar"))
    with pytest.raises(RuntimeError), build_sources(plan, RecordingRunner(), root):
        raise RuntimeError("the hook failed")
    assert (root / "etc/apt/sources.list").read_text() == IMAGE_SOURCES
    assert not (root / ASIDE).exists()


def test_unchecked_mirror_is_trusted_only_then(plan_of: PlanOf, out: Path) -> None:
    assert "[trusted=yes]" not in build_source_line(plan_of("--tarball", str(out / "r.tar")))
    line = build_source_line(plan_of("--tarball", str(out / "r.tar"), "--no-check-gpg"))
    assert line.startswith(f"deb [trusted=yes] {MIRROR} ")


def test_a_local_mirror_is_left_alone(plan_of: PlanOf, root: Path, out: Path) -> None:
    plan = plan_of("--tarball", str(out / "r.tar"), "--mirror", "file:///srv/mirror")
    runner = RecordingRunner()
    with build_sources(plan, runner, root):
        assert (root / "etc/apt/sources.list").read_text() == IMAGE_SOURCES
    assert runner.calls == []
