"""(e) compression: mksquashfs of one bootstrapped tree with each compressor."""

from __future__ import annotations

import os

from benchmarks import commands as cmd
from benchmarks.bench import Bench
from benchmarks.harness import file_size, read_tree, say
from benchmarks.report import (
    CompressionRun,
    Figure,
    compression_result,
    compression_table,
    mib,
    recommend,
)

NPROC = os.cpu_count() or 1
TREES = {
    "debootstrap": "plain debootstrap's tree from (a), its downloaded .debs removed",
    "mmdebstrap-ours-args": "plain mmdebstrap's tree from (a2)",
    "mmdebstrap": "a plain mmdebstrap tree",
}


def measure_e(bench: Bench) -> list[Figure]:
    """(e) mksquashfs of one bootstrapped tree with each compressor, all cores,
    ``bench.runs`` rounds."""
    name, tree = bench.tree_for_compression()
    say(f"compression: reading {tree} once into the page cache")
    read_tree(tree)
    top = bench.dir("compression")
    chosen = cmd.compressors(bench.quick)
    seconds: dict[str, list[float]] = {c.name: [] for c in chosen}
    sizes: dict[str, list[int]] = {c.name: [] for c in chosen}
    # Whole rounds rather than each compressor N times in a row: a drift in
    # the machine's speed then touches every compressor alike.
    for n in range(1, bench.runs + 1):
        for comp in chosen:
            out = top / "out.squashfs"
            timing = bench.runner.run(f"mksquashfs-{comp.name.replace(' ', '')}-{n}",
                                      cmd.mksquashfs_argv(tree, out, comp.args, NPROC))
            seconds[comp.name].append(timing.seconds)
            sizes[comp.name].append(file_size(out) or 0)
            out.unlink(missing_ok=True)
    results = [compression_result(c.name, seconds[c.name], sizes[c.name], c.option)
               for c in chosen]
    for r in results:
        if r.size_varies:
            bench.note(f"(e) {r.name}: the output's size differs between runs "
                       f"({', '.join(str(int(s)) for s in r.size.samples)} bytes)")
    rec = recommend(results)
    bench.compression = CompressionRun(TREES.get(name, name), NPROC, results)
    print(f"\n(e) compression of {TREES.get(name, name)}, {NPROC} processors, "
          f"times of {bench.runs} run(s)\n{compression_table(results)}\n{rec.line()}\n",
          flush=True)
    bench.details["e"] = {"tree": name, "results": results, "recommendation": rec.line()}
    figures = [Figure("e", f"mksquashfs {r.name}", r.time, "s",
                      note=f"{mib(r.size.median) or 0:.1f} MiB") for r in results]
    choice = rec.choice.name if rec.choice else None
    return [*figures, Figure("e", "recommended compressor", choice, note=rec.line())]
