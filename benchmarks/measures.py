"""(a), (a2), (b) and (d): the measurements built on our cold --squash builds.

Each returns its Figures.  Every timed figure is measured ``bench.runs``
times and reported as the median with min and max; ratios are of medians.
A measurement that cannot run reports "skipped: why" or "failed: why" and
the benchmark goes on with the next one.
"""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from benchmarks import commands as cmd
from benchmarks.bench import Bench, ColdBuild
from benchmarks.harness import CommandFailed, file_size
from benchmarks.report import Figure, Stats, mib, number, ratio, stats, stats_of

SQUASHFS = "filesystem.squashfs"
DEB_CACHE = Path("var/cache/apt/archives")
T = TypeVar("T")


def remove_downloaded_debs(root: Path) -> tuple[int, int]:
    """Remove the .debs plain debootstrap leaves in ROOT/var/cache/apt/archives
    (our build and mmdebstrap do not ship them, so the compared trees would
    not hold the same things); returns (files, bytes) removed."""
    archives = root / DEB_CACHE
    if not archives.is_dir():
        return 0, 0
    # Were the directory a link out of the tree, we would delete the host's
    # own packages.
    if not archives.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"{archives} points outside {root}: not removing its .debs")
    count = size = 0
    for deb in sorted(archives.glob("*.deb")):
        st = deb.lstat()
        if stat.S_ISREG(st.st_mode):
            deb.unlink()
            count, size = count + 1, size + st.st_size
    return count, size


def in_fresh_trees(bench: Bench, name: str, label: str,
                   step: Callable[[str, Path], T]) -> list[T]:
    """``step(label-N, root)`` run ``bench.runs`` times, each in a new tree.
    Only the last tree is kept, as ``bench.trees[name]`` for (e): N trees
    would fill the disk."""
    done = []
    for n in range(1, bench.runs + 1):
        if name in bench.trees:
            bench.drop(bench.trees[name].parent)
        root = bench.dir(f"{label}-{n}") / "root"
        done.append(step(f"{label}-{n}", root))
        bench.trees[name] = root  # only once it is complete: (e) must not take a broken one
    return done


@dataclass(frozen=True)
class PlainRun:
    bootstrap_s: float
    mksquashfs_s: float
    squashfs_bytes: int | None
    debs: int = 0  # downloaded .debs removed between the two, untimed
    debs_bytes: int = 0

    @property
    def total_s(self) -> float:
        return self.bootstrap_s + self.mksquashfs_s


ArgvFor = Callable[[list[str], Path, str], list[str]]
# Plain tool -> (its argv, whether its downloaded .debs are removed before mksquashfs).
PLAIN_TOOLS: dict[str, tuple[ArgvFor, bool]] = {
    "debootstrap": (cmd.debootstrap_argv, True),
    "mmdebstrap": (cmd.mmdebstrap_argv, False),
}


def plain_build(bench: Bench, tool: str, packages: list[str]) -> list[PlainRun]:
    """Bootstrap a tree with a plain tool, then mksquashfs it, ``bench.runs``
    times; the last tree is kept."""
    argv_for, drop_debs = PLAIN_TOOLS[tool]

    def once(label: str, root: Path) -> PlainRun:
        out = root.parent / SQUASHFS
        boot = bench.runner.run(label, argv_for(packages, root, bench.mirror))
        # Between the two timed commands: counted neither for the tool nor for us.
        debs, debs_bytes = remove_downloaded_debs(root) if drop_debs else (0, 0)
        squash = bench.runner.run(f"{label}-mksquashfs", cmd.mksquashfs_argv(
            root, out, ("-comp", cmd.COMPRESSION)))
        size = file_size(out)
        out.unlink(missing_ok=True)
        return PlainRun(boot.seconds, squash.seconds, size, debs, debs_bytes)

    return in_fresh_trees(bench, tool, f"plain-{tool}", once)


def plain_note(tool: str, runs: list[PlainRun]) -> str:
    boot, squash = stats(r.bootstrap_s for r in runs), stats(r.mksquashfs_s for r in runs)
    note = (f"medians: {tool} {number(boot.median, 's')} s + mksquashfs "
            f"{number(squash.median, 's')} s; squashfs {mib(runs[0].squashfs_bytes) or 0:.1f} MiB")
    if PLAIN_TOOLS[tool][1]:
        note += (f"; {runs[0].debs} downloaded .debs ({mib(runs[0].debs_bytes) or 0:.1f} MiB) "
                 "removed before mksquashfs, untimed")
    return note


# Our cold --squash against each plain tool + mksquashfs (the issue "Speed").
A_TARGETS = {"debootstrap": 0.95, "mmdebstrap": 1.05}


def measure_a(bench: Bench) -> list[Figure]:
    """(a) cold --squash build: ours vs debootstrap+mksquashfs vs mmdebstrap+mksquashfs."""
    colds = bench.colds()
    ours = stats(c.run.seconds for c in colds)
    ours_size = colds[0].squash_bytes
    figures = [Figure("a", "ours cold --squash", ours, "s",
                      note=f"squashfs {mib(ours_size) or 0:.1f} MiB")]
    packages = bench.packages("squash")
    details: dict[str, object] = {"ours_s": ours, "ours_squashfs_bytes": ours_size}
    for tool in PLAIN_TOOLS:
        try:
            runs = plain_build(bench, tool, packages)
        except CommandFailed as exc:
            figures.append(Figure("a", f"plain {tool} + mksquashfs", f"failed: {exc}"))
            continue
        total = stats(r.total_s for r in runs)
        details[tool] = {"total_s": total, "runs": runs}
        figures.append(Figure("a", f"plain {tool} + mksquashfs", total, "s",
                              note=plain_note(tool, runs)))
        figures.append(Figure("a", f"ratio ours/{tool}", ratio(ours, total), "x",
                              target=("<=", A_TARGETS[tool])))
    if "debootstrap" in bench.trees and "mmdebstrap" in bench.trees:  # (e) takes debootstrap's
        bench.drop(bench.trees["mmdebstrap"].parent)
    bench.details["a"] = details
    return figures


def measure_a2(bench: Bench) -> list[Figure]:
    """(a2) the bootstrap stage alone: ours (from our logs) vs plain mmdebstrap
    with the same arguments (less our package cache's hooks)."""
    colds = bench.colds()
    logs = [cmd.parse_log(c.run.log_text()) for c in colds]
    stages = [cmd.bootstrap_stage(entries) for entries in logs]
    parts: dict[str, Stats | None] = {k: stats_of(s[k] for s in stages) for k in stages[0]}
    ours_argv = cmd.mmdebstrap_argv_from_log(logs[0])
    plain = stats(t.seconds for t in in_fresh_trees(
        bench, "mmdebstrap-ours-args", "plain-mmdebstrap-ours-args",
        lambda label, root: bench.runner.run(label, cmd.plain_from_ours(ours_argv, root))))
    bench.details["a2"] = {**parts, "plain_mmdebstrap_s": plain}
    shown = ", ".join(f"{k.removesuffix('_s')} {v.median:.0f} s" for k, v in parts.items()
                      if k != "stage_s" and v is not None)
    return [
        Figure("a2", "ours bootstrap stage", parts["stage_s"], "s",
               note=f"from our logs (1 s resolution), medians: {shown}"),
        Figure("a2", "plain mmdebstrap, our args", plain, "s"),
        Figure("a2", "ratio ours/plain bootstrap", ratio(parts["stage_s"], plain), "x",
               target=("<=", 1.05)),
        Figure("a2", "ratio our mmdebstrap step/plain", ratio(parts["mmdebstrap_s"], plain),
               "x"),
    ]


def squashfs_file(squashfs: Path, path: str) -> str:
    result = subprocess.run(["unsquashfs", "-cat", str(squashfs), path],
                            capture_output=True, text=True, check=False)
    return result.stdout


@dataclass(frozen=True)
class WarmRun:
    seconds: float
    cache_hit: bool
    hook_output_ok: bool
    phases: dict[str, float]


@dataclass(frozen=True)
class Variant:
    """One kind of warm rebuild of (b)."""

    name: str
    compression: str | None  # None: vmdebootstrap's default (xz -b 1M)
    layered: bool = False
    limit: float | None = None  # target in seconds; None: the squashfs phase + SLACK


SLACK = 15.0  # the default compressor's target: mksquashfs's own time + this
WARM_VARIANTS = (
    Variant("default compressor (xz)", None),
    Variant("zstd:6", "zstd:6", limit=20.0),
    Variant("--layered, xz", None, layered=True, limit=20.0),
)


def warm_build(bench: Bench, cold: ColdBuild, variant: Variant, label: str) -> WarmRun:
    """A rebuild with the cold build's cache after changing only the hook's text."""
    bench.write_hook(cold.hook, f"built by the benchmark ({label})")
    out = bench.dir(label.replace(" ", "-")) / "squash"
    run = bench.ours(f"ours-{label.replace(' ', '-')}", [("squash", out)], cache=cold.cache,
                     hook=cold.hook, compression=variant.compression,
                     layered=variant.layered, row=f"warm --squash, {variant.name}")
    text = run.log_text()
    holder = "filesystem.layer.squashfs" if variant.layered else SQUASHFS
    motd = squashfs_file(out / holder, "etc/motd")
    bench.drop(out.parent)
    return WarmRun(run.seconds, "root cache: hit" in text, f"({label})" in motd,
                   cmd.phases(cmd.parse_log(text)))


def phase_medians(runs: list[WarmRun]) -> dict[str, float]:
    names = dict.fromkeys(p for r in runs for p in r.phases)
    return {p: stats(r.phases.get(p, 0.0) for r in runs).median for p in names}


def measure_warm(bench: Bench, cold: ColdBuild, variant: Variant) -> list[Figure]:
    figures = []
    slug = variant.name.split(",")[0].strip("-").split(" ")[0]
    if variant.layered:  # the first one squashes the cached root (then cached)
        try:
            first = warm_build(bench, cold, variant, f"warm {slug} first")
        except CommandFailed as exc:
            return [Figure("b", f"ours warm, {variant.name}", f"skipped: {exc}")]
        figures.append(Figure("b", "ours --layered first build", first.seconds, "s",
                              note="squashes the cached root once (xz); not a target"))
    runs = [warm_build(bench, cold, variant, f"warm {slug} {n}")
            for n in range(1, bench.runs + 1)]
    warm = stats(r.seconds for r in runs)
    hits, ok = sum(r.cache_hit for r in runs), sum(r.hook_output_ok for r in runs)
    check = f"root cache hit {hits}/{len(runs)}, new hook output in the output {ok}/{len(runs)}"
    if hits < len(runs) or ok < len(runs):
        bench.note(f"(b) warm builds, {variant.name}: {check}")
    medians = phase_medians(runs)
    shown = ", ".join(f"{k} {v:.1f} s" for k, v in medians.items())
    limit, why = variant.limit, ""
    if limit is None:
        squash = medians.get("squashfs")
        if squash is None:
            return [Figure("b", f"ours warm, {variant.name}", "failed: no squashfs phase "
                           "in the logs")]
        limit = squash + SLACK
        why = (f"; target = its own mksquashfs ({squash:.1f} s, the squashfs phase) + "
               f"{SLACK:.0f} s; the rest of the build took {warm.median - squash:.1f} s")
    details = bench.details.setdefault("b", {})
    assert isinstance(details, dict)
    details[variant.name] = {"warm_s": warm, "runs": runs}
    figures.append(Figure("b", f"ours warm, {variant.name}", warm, "s",
                          target=("<=", round(limit, 1)),
                          note=f"{check}; medians: {shown}{why}"))
    return figures


def measure_b(bench: Bench) -> list[Figure]:
    """(b) warm rebuilds after changing only the hook, with the first cold
    build's cache: the default compressor, zstd:6, and --layered."""
    cold = bench.colds()[0]
    return [f for v in WARM_VARIANTS for f in measure_warm(bench, cold, v)]


def measure_d(bench: Bench) -> list[Figure]:
    """(d) peak RSS of our own process, and of its children, in the cold builds."""
    colds = bench.colds()
    usages = [c.run.rusage for c in colds if c.run.rusage]
    bench.details["d"] = [{**c.run.rusage, "tree_maxrss_kib": c.run.timing.maxrss_kib}
                          for c in colds]
    if not usages:
        return [Figure("d", "max RSS of vmdebootstrap", "failed: the wrapper wrote no usage")]
    if len(usages) < len(colds):
        bench.note(f"(d) only {len(usages)} of {len(colds)} cold builds wrote their usage")

    def of(key: str, scale: float = 1.0) -> Stats:
        return stats(u[key] / scale for u in usages)

    return [
        Figure("d", "max RSS of vmdebootstrap itself", of("self_maxrss_kib", 1024), "MiB",
               target=("<", 100), note=f"CPU {of('self_cpu_s').median:.1f} s (median)"),
        Figure("d", "max RSS of its children (largest)", of("children_maxrss_kib", 1024),
               "MiB", note=f"CPU {of('children_cpu_s').median:.1f} s (median)"),
    ]
