"""One function per measurement; each returns its Figures.

A measurement that cannot run reports "skipped: why" or "failed: why" and
the benchmark goes on with the next one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from benchmarks import commands as cmd
from benchmarks.bench import Bench, compare_manifests, manifest, sha256
from benchmarks.harness import CommandFailed, file_size, read_tree, say
from benchmarks.report import (
    CompressionResult,
    Figure,
    compression_table,
    mib,
    ratio,
    recommend,
)

NPROC = os.cpu_count() or 1
SQUASHFS = "filesystem.squashfs"


def plain_build(bench: Bench, name: str, argv_for: Callable[[list[str], Path, str], list[str]],
                packages: list[str]) -> tuple[float, float, float, int | None]:
    """Bootstrap a tree with a plain tool, then mksquashfs it: returns
    (total s, bootstrap s, mksquashfs s, squashfs bytes); the tree is kept."""
    top = bench.dir(f"plain-{name}")
    root, out = top / "root", top / SQUASHFS
    boot = bench.runner.run(f"plain-{name}", argv_for(packages, root, bench.mirror))
    bench.trees[name] = root
    squash = bench.runner.run(f"plain-{name}-mksquashfs", cmd.mksquashfs_argv(
        root, out, ("-comp", cmd.COMPRESSION)))
    size = file_size(out)
    out.unlink(missing_ok=True)
    return boot.seconds + squash.seconds, boot.seconds, squash.seconds, size


def measure_a(bench: Bench) -> list[Figure]:
    """(a) cold --squash build: ours vs debootstrap+mksquashfs vs mmdebstrap+mksquashfs."""
    cold = bench.cold()
    ours_size = file_size(cold.squash / SQUASHFS)
    figures = [Figure("a", "ours cold --squash", cold.run.seconds, "s",
                      note=f"squashfs {mib(ours_size) or 0:.1f} MiB")]
    packages = bench.packages("squash")
    tools = {"debootstrap": cmd.debootstrap_argv, "mmdebstrap": cmd.mmdebstrap_argv}
    details: dict[str, object] = {"ours_s": cold.run.seconds, "ours_squashfs_bytes": ours_size}
    for tool, argv in tools.items():
        try:
            total, boot, squash, size = plain_build(bench, tool, argv, packages)
        except CommandFailed as exc:
            figures.append(Figure("a", f"plain {tool} + mksquashfs", f"failed: {exc}"))
            continue
        details[tool] = {"total_s": total, "bootstrap_s": boot, "mksquashfs_s": squash,
                         "squashfs_bytes": size}
        figures.append(Figure("a", f"plain {tool} + mksquashfs", total, "s",
                              note=f"{tool} {boot:.1f} s + mksquashfs {squash:.1f} s, "
                                   f"squashfs {mib(size) or 0:.1f} MiB"))
        figures.append(Figure("a", f"ratio ours/{tool}", ratio(cold.run.seconds, total), "x"))
    if "mmdebstrap" in bench.trees:  # (e) uses the debootstrap tree
        bench.drop(bench.trees["mmdebstrap"].parent)
    bench.details["a"] = details
    return figures


def measure_a2(bench: Bench) -> list[Figure]:
    """(a2) the bootstrap stage alone: ours (from our log) vs plain mmdebstrap
    with the same arguments (less our package cache's hooks)."""
    cold = bench.cold()
    entries = cmd.parse_log(cold.run.log_text())
    stage = cmd.bootstrap_stage(entries)
    root = bench.dir("plain-mmdebstrap-ours-args") / "root"
    argv = cmd.plain_from_ours(cmd.mmdebstrap_argv_from_log(entries), root)
    plain = bench.runner.run("plain-mmdebstrap-ours-args", argv)
    bench.trees["mmdebstrap-ours-args"] = root
    bench.details["a2"] = {**stage, "plain_mmdebstrap_s": plain.seconds}
    parts = ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in stage.items()
                      if k != "stage_s" and v is not None)
    return [
        Figure("a2", "ours bootstrap stage", stage["stage_s"], "s",
               note=f"from our log (1 s resolution): {parts}"),
        Figure("a2", "plain mmdebstrap, our args", plain.seconds, "s"),
        Figure("a2", "ratio ours/plain bootstrap", ratio(stage["stage_s"], plain.seconds), "x",
               target=("<=", 1.05)),
        Figure("a2", "ratio our mmdebstrap step/plain", ratio(stage["mmdebstrap_s"],
                                                               plain.seconds), "x"),
    ]


def squashfs_file(squashfs: Path, path: str) -> str:
    result = subprocess.run(["unsquashfs", "-cat", str(squashfs), path],
                            capture_output=True, text=True, check=False)
    return result.stdout


def measure_b(bench: Bench) -> list[Figure]:
    """(b) warm rebuild after changing only the hook, with the same cache."""
    cold = bench.cold()
    bench.write_hook(cold.hook, "built by the benchmark (warm)")
    out = bench.dir("warm") / "squash"
    warm = bench.ours("ours-warm-squash", [("squash", out)], cache=cold.cache, hook=cold.hook)
    text = warm.log_text()
    hit = "root cache: hit" in text
    motd = squashfs_file(out / SQUASHFS, "etc/motd")
    hook_ran = "(warm)" in motd
    check = ("root cache hit" if hit else "root cache MISSED") + (
        ", new hook output in the squashfs" if hook_ran else ", hook output NOT in the squashfs")
    if not (hit and hook_ran):
        bench.note(f"(b) warm build: {check}")
    entries = cmd.parse_log(text)
    parts = {"restore_s": cmd.span(entries, "+ tar --extract", "Configuring the system"),
             "mksquashfs_s": cmd.span(entries, "+ mksquashfs", "build finished")}
    shown = ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in parts.items()
                      if v is not None)
    note = f"{check}; {shown}" if shown else check
    bench.details["b"] = {"warm_s": warm.seconds, "cold_s": cold.run.seconds,
                          "cache_hit": hit, "hook_output_ok": hook_ran, **parts}
    bench.drop(out.parent)
    return [
        Figure("b", "ours warm --squash (hook changed)", warm.seconds, "s", target=("<", 60),
               note=note),
        Figure("b", "ratio warm/cold", ratio(warm.seconds, cold.run.seconds), "x",
               target=("<=", 0.3)),
    ]


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


def live_build(bench: Bench) -> tuple[float, float, int | None]:
    """live-build's (cold s, warm s, ISO bytes); its directory goes afterwards."""
    ensure_live_build(bench)
    lbdir = bench.dir("lb")
    try:
        config = lb_configure(bench, lbdir, "lb-config-cold")
        build, size = lb_build(bench, lbdir, "lb-build-cold")
        cold = config + build
        clean = bench.runner.run("lb-clean", ["lb", "clean"], cwd=lbdir).seconds
        config = lb_configure(bench, lbdir, "lb-config-warm")
        build, _ = lb_build(bench, lbdir, "lb-build-warm")
        return cold, clean + config + build, size
    finally:
        bench.drop(lbdir)


def measure_c(bench: Bench) -> list[Figure]:
    """(c) our --iso, cold then warm, vs live-build's lb build, cold then warm."""
    top = bench.dir("iso")
    cache = top / "cache"
    try:
        cold = bench.ours("ours-cold-iso", [("iso", top / "cold.iso")], cache=cache)
    except CommandFailed as exc:
        bench.iso_works = False
        return [Figure("c", "ratio ours cold/lb cold", f"skipped: our --iso failed ({exc})",
                       target=("<=", 0.5))]
    bench.iso_works = True
    cold_size = file_size(top / "cold.iso")
    (top / "cold.iso").unlink(missing_ok=True)
    warm = bench.ours("ours-warm-iso", [("iso", top / "warm.iso")], cache=cache)
    (top / "warm.iso").unlink(missing_ok=True)
    figures = [Figure("c", "ours cold --iso", cold.seconds, "s",
                      note=f"ISO {mib(cold_size) or 0:.1f} MiB"),
               Figure("c", "ours warm --iso", warm.seconds, "s")]
    details: dict[str, object] = {"ours_cold_s": cold.seconds, "ours_warm_s": warm.seconds,
                                  "ours_iso_bytes": cold_size}
    bench.details["c"] = details
    try:
        lb_cold, lb_warm, lb_size = live_build(bench)
    except CommandFailed as exc:
        figures.append(Figure("c", "ratio ours cold/lb cold", f"failed: live-build: {exc}",
                              target=("<=", 0.5)))
        return figures
    details.update(lb_cold_s=lb_cold, lb_warm_s=lb_warm, lb_iso_bytes=lb_size)
    return [*figures,
            Figure("c", "live-build cold", lb_cold, "s",
                   note=f"lb config + lb build; ISO {mib(lb_size) or 0:.1f} MiB"),
            Figure("c", "live-build warm", lb_warm, "s",
                   note="lb clean (keeps cache/) + lb config + lb build"),
            Figure("c", "ratio ours cold/lb cold", ratio(cold.seconds, lb_cold), "x",
                   target=("<=", 0.5)),
            Figure("c", "ratio ours warm/lb warm", ratio(warm.seconds, lb_warm), "x")]


def measure_d(bench: Bench) -> list[Figure]:
    """(d) peak RSS of our own process, and of its children, in the cold build."""
    cold = bench.cold()
    usage = cold.run.rusage
    bench.details["d"] = {**usage, "tree_maxrss_kib": cold.run.timing.maxrss_kib}
    if not usage:
        return [Figure("d", "max RSS of vmdebootstrap", "failed: the wrapper wrote no usage")]
    return [
        Figure("d", "max RSS of vmdebootstrap itself", usage["self_maxrss_kib"] / 1024, "MiB",
               note=f"CPU {usage['self_cpu_s']:.1f} s"),
        Figure("d", "max RSS of its children (largest)", usage["children_maxrss_kib"] / 1024,
               "MiB", note=f"CPU {usage['children_cpu_s']:.1f} s"),
    ]


def measure_e(bench: Bench) -> list[Figure]:
    """(e) mksquashfs of one bootstrapped tree with each compressor, all cores."""
    tree = bench.tree_for_compression()
    say(f"compression: reading {tree} once into the page cache")
    read_tree(tree)
    top = bench.dir("compression")
    results = []
    for comp in cmd.compressors(bench.quick):
        out = top / "out.squashfs"
        timing = bench.runner.run(f"mksquashfs-{comp.name.replace(' ', '')}",
                                  cmd.mksquashfs_argv(tree, out, comp.args, NPROC))
        results.append(CompressionResult(comp.name, timing.seconds, file_size(out) or 0,
                                         comp.option))
        out.unlink(missing_ok=True)
    table = compression_table(results)
    rec = recommend(results)
    print(f"\n(e) compression of {tree.parent.name}/root, {NPROC} processors\n{table}\n"
          f"{rec.line()}\n", flush=True)
    bench.details["e"] = {"tree": tree.parent.name, "results": [r.__dict__ for r in results],
                          "recommendation": rec.line()}
    figures = [Figure("e", f"mksquashfs {r.name}", f"{r.seconds:.1f} s, {mib(r.size):.1f} MiB")
               for r in results]
    choice = rec.choice.name if rec.choice else None
    return [*figures, Figure("e", "recommended compressor", choice, note=rec.line())]


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
