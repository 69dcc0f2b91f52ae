"""--layered: its refusals, and how a layered squash directory is written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.fakes import RecordingRunner
from tests.unit.conftest import CliResult
from vmdebootstrap.host.run import Result
from vmdebootstrap.outputs import layered
from vmdebootstrap.plan import Plan

RunCli = Callable[..., CliResult]


def test_layered_needs_the_root_cache(problems_of: Callable[..., list[str]],
                                      out: Path) -> None:
    assert problems_of("--squash", str(out / "live"), "--layered", "--no-cache") == [
        "--layered stacks the build's changes on the cached root, so it needs the root "
        "cache: drop --no-cache"]


def test_layered_is_for_live_outputs(run_cli: RunCli, plan_of: Callable[..., Plan],
                                     out: Path) -> None:
    result = run_cli("--dry-run", "--tarball", str(out / "r.tar"), "--layered")
    assert result.code == 0, result.err
    assert "note: --layered is ignored for --tarball (it applies to --squash and --iso " \
        "only)" in result.out
    assert not plan_of("--tarball", str(out / "r.tar"), "--layered").targets.layered
    assert plan_of("--iso", str(out / "l.iso"), "--layered").targets.layered
    assert not plan_of("--iso", str(out / "l.iso")).targets.layered


class Squasher(RecordingRunner):
    """mksquashfs writes a file named after its source."""

    def run(self, argv: object, **kw: object) -> Result:
        result = super().run(argv, **kw)  # type: ignore[arg-type]
        args = self.calls[-1]
        if args[0] == "mksquashfs":
            Path(args[2]).write_text(f"squashed {args[1]}")
        return result


def test_the_base_is_squashed_once_and_the_layer_every_time(tmp_path: Path) -> None:
    roots = tmp_path / "cache/roots"
    base, layer = roots / "0123abcd", tmp_path / "work/layer"
    for d in (base / "etc", layer / "etc"):
        d.mkdir(parents=True)
    runner = Squasher()
    for n in (1, 2):
        dest = tmp_path / f"live{n}"
        dest.mkdir()
        layered.write_layers(runner, layered.Layers(base, layer), dest, "zstd:6", 1700000000)
        assert (dest / "filesystem.module").read_text() == \
            "filesystem.squashfs\nfilesystem.layer.squashfs\n"
        assert (dest / "filesystem.squashfs").read_text() == f"squashed {base}"
        assert (dest / "filesystem.layer.squashfs").read_text() == f"squashed {layer}"
    squashed = [c[1] for c in runner.calls if c[0] == "mksquashfs"]
    assert squashed == [str(base), str(layer), str(layer)]
    assert [p.name for p in roots.glob("*.squashfs")] == ["0123abcd.zstd-6.1700000000.squashfs"]
    assert not [p for p in roots.iterdir() if p.name.startswith(".")]
