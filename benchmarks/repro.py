"""(f) reproducibility: two --no-cache builds with the same SOURCE_DATE_EPOCH.

Not timed, so it runs once whatever --runs says.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.bench import Bench, compare_manifests, manifest, sha256
from benchmarks.harness import CommandFailed
from benchmarks.report import Figure

SQUASHFS = "filesystem.squashfs"


def reproducible_builds(bench: Bench, epoch: int, with_iso: bool) -> list[Path]:
    tops = []
    for n in (1, 2):
        top = bench.dir(f"repro-{n}{'-iso' if with_iso else ''}")
        outputs = [("squash", top / "squash")] + ([("iso", top / "live.iso")] if with_iso
                                                  else [])
        bench.ours(f"ours-reproducible-{n}{'-iso' if with_iso else ''}", outputs, cache=None,
                   env={"SOURCE_DATE_EPOCH": str(epoch)})
        tops.append(top)
    return tops


def squashfs_differences(bench: Bench, first: Path, second: Path) -> list[str]:
    top = bench.dir("repro-diff")
    trees = []
    for n, squashfs in enumerate((first, second), 1):
        bench.runner.run(f"unsquashfs-{n}", ["unsquashfs", "-no-progress", "-d",
                                             str(top / str(n)), str(squashfs)])
        trees.append(manifest(top / str(n)))
    return compare_manifests(*trees)


def measure_f(bench: Bench, epoch: int) -> list[Figure]:
    """(f) two --no-cache builds with the same SOURCE_DATE_EPOCH: same bits?"""
    with_iso = bench.iso_works is not False
    iso_note = "" if with_iso else "skipped: our --iso does not work (see (c))"
    try:
        tops = reproducible_builds(bench, epoch, with_iso)
    except CommandFailed as exc:
        if not with_iso:
            raise
        iso_note = f"skipped: our --iso failed ({exc})"
        bench.note(f"(f) {iso_note}; comparing squashfs builds only")
        tops = reproducible_builds(bench, epoch, False)
        with_iso = False
    a, b = (sha256(t / "squash" / SQUASHFS) for t in tops)
    same = a == b
    figures = [Figure("f", "filesystem.squashfs identical", "identical" if same else "differ",
                      target=("==", "identical"), note=f"sha256 {a[:16]} / {b[:16]}")]
    details: dict[str, object] = {"epoch": epoch, "squashfs_sha256": [a, b]}
    if not same:
        diffs = squashfs_differences(bench, *(t / "squash" / SQUASHFS for t in tops))
        details["differences"] = diffs[:200]
        print(f"\n(f) {len(diffs)} paths differ between the two squashfs; the first 20:\n  "
              + "\n  ".join(diffs[:20]) + "\n", flush=True)
        figures[0].note += f"; {len(diffs)} paths differ"
    if with_iso:
        ia, ib = (sha256(t / "live.iso") for t in tops)
        details["iso_sha256"] = [ia, ib]
        figures.append(Figure("f", "ISO identical", "identical" if ia == ib else "differ",
                              target=("==", "identical"), note=f"sha256 {ia[:16]} / {ib[:16]}"))
    else:
        figures.append(Figure("f", "ISO identical", iso_note, target=("==", "identical")))
    bench.details["f"] = details
    for t in tops:
        bench.drop(t)
    return figures
