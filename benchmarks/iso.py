"""(c) our --iso, cold then warm, against live-build, cold then warm.

Each side is measured ``bench.runs`` times, a round of ours then a round
of live-build's; every cold run starts from a fresh cache (ours) or a fresh
live-build directory (live-build's).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks import commands as cmd
from benchmarks.bench import Bench
from benchmarks.harness import CommandFailed, file_size
from benchmarks.report import Figure, mib, ratio, stats

HEADLINE = "ratio ours cold/lb cold"


class IsoFailed(Exception):
    """Our --iso build failed: (c) is skipped and (f) leaves the ISO out."""


def ensure_live_build(bench: Bench) -> None:
    if shutil.which("lb"):
        return
    bench.note("live-build is not installed: installing it with apt-get install -y live-build")
    bench.runner.run("apt-get-install-live-build", ["apt-get", "install", "-y", "live-build"],
                     env={"DEBIAN_FRONTEND": "noninteractive"})


def lb_configure(bench: Bench, lbdir: Path, label: str) -> float:
    """lb config, then our package list in place of live-build's default one.
    Run again after lb clean, which removes the config stage's stamp."""
    timing = bench.runner.run(label, cmd.lb_config_argv(bench.mirror), cwd=lbdir)
    lists = lbdir / "config" / "package-lists"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "live.list.chroot").write_text(cmd.lb_package_list(bench.packages("iso")))
    return timing.seconds


def lb_build(bench: Bench, lbdir: Path, label: str) -> tuple[float, int | None]:
    timing = bench.runner.run(label, ["lb", "build"], cwd=lbdir)
    isos = sorted(lbdir.glob("*.iso"))
    if not isos:
        raise CommandFailed(timing, [f"lb build wrote no ISO in {lbdir}"])
    size = file_size(isos[0])
    for iso in isos:
        iso.unlink()
    return timing.seconds, size


def live_build(bench: Bench, n: int) -> tuple[float, float, int | None]:
    """live-build's (cold s, warm s, ISO bytes) in a fresh directory, which
    goes afterwards."""
    lbdir = bench.dir(f"lb-{n}")
    try:
        config = lb_configure(bench, lbdir, f"lb-config-cold-{n}")
        build, size = lb_build(bench, lbdir, f"lb-build-cold-{n}")
        cold = config + build
        clean = bench.runner.run(f"lb-clean-{n}", ["lb", "clean"], cwd=lbdir).seconds
        config = lb_configure(bench, lbdir, f"lb-config-warm-{n}")
        build, _ = lb_build(bench, lbdir, f"lb-build-warm-{n}")
        return cold, clean + config + build, size
    finally:
        bench.drop(lbdir)


def ours_iso(bench: Bench, n: int) -> tuple[float, float, int | None]:
    """Our (cold s, warm s, ISO bytes): a cold build with a fresh cache, then a
    warm one with the same cache, which goes afterwards."""
    top = bench.dir(f"iso-{n}")
    cache = top / "cache"
    try:
        cold = bench.ours(f"ours-cold-iso-{n}", [("iso", top / "cold.iso")], cache=cache,
                          row="cold --iso (zstd)")
    except CommandFailed as exc:
        raise IsoFailed(str(exc)) from exc
    size = file_size(top / "cold.iso")
    (top / "cold.iso").unlink(missing_ok=True)
    warm = bench.ours(f"ours-warm-iso-{n}", [("iso", top / "warm.iso")], cache=cache,
                      row="warm --iso (zstd)")
    bench.drop(top)
    return cold.seconds, warm.seconds, size


def measure_c(bench: Bench) -> list[Figure]:
    """(c) our --iso, cold then warm, vs live-build's lb build, cold then warm,
    in whole rounds (ours, then live-build's): a drift in the machine's speed
    during the run then touches both sides alike."""
    ours: list[tuple[float, float, int | None]] = []
    lb: list[tuple[float, float, int | None]] = []
    lb_failed = None
    for n in range(1, bench.runs + 1):
        try:
            ours.append(ours_iso(bench, n))
        except IsoFailed as exc:
            bench.iso_works = False
            return [Figure("c", HEADLINE, f"skipped: our --iso failed ({exc})",
                           target=("<=", 0.4))]
        if lb_failed is None:
            try:
                ensure_live_build(bench)
                lb.append(live_build(bench, n))
            except CommandFailed as exc:
                lb_failed = exc
    bench.iso_works = True
    cold, warm = stats(r[0] for r in ours), stats(r[1] for r in ours)
    figures = [Figure("c", "ours cold --iso", cold, "s",
                      note=f"ISO {mib(ours[0][2]) or 0:.1f} MiB"),
               Figure("c", "ours warm --iso", warm, "s")]
    details: dict[str, object] = {"ours_cold_s": cold, "ours_warm_s": warm,
                                  "ours_iso_bytes": ours[0][2]}
    bench.details["c"] = details
    if lb_failed is not None:
        figures.append(Figure("c", HEADLINE, f"failed: live-build: {lb_failed}",
                              target=("<=", 0.4)))
        return figures
    lb_cold, lb_warm = stats(r[0] for r in lb), stats(r[1] for r in lb)
    details.update(lb_cold_s=lb_cold, lb_warm_s=lb_warm, lb_iso_bytes=lb[0][2])
    return [*figures,
            Figure("c", "live-build cold", lb_cold, "s",
                   note=f"lb config + lb build; ISO {mib(lb[0][2]) or 0:.1f} MiB"),
            Figure("c", "live-build warm", lb_warm, "s",
                   note="lb clean (keeps cache/) + lb config + lb build"),
            Figure("c", HEADLINE, ratio(cold, lb_cold), "x", target=("<=", 0.4)),
            Figure("c", "ratio ours warm/lb warm", ratio(warm, lb_warm), "x")]
