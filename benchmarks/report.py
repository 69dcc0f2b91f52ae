"""Figures, their repeated samples, targets, ratios and the printed tables
(pure, unit tested)."""

from __future__ import annotations

import operator
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt,
}


@dataclass(frozen=True)
class Stats:
    """A figure measured n times: its median, min and max (and the samples,
    in the order they were taken, for the JSON)."""

    median: float
    min: float
    max: float
    n: int
    samples: tuple[float, ...] = ()


def stats(samples: Iterable[float]) -> Stats:
    """The median (of the two middle values when n is even), min and max."""
    values = tuple(float(s) for s in samples)
    if not values:
        raise ValueError("no samples")
    return Stats(statistics.median(values), min(values), max(values), len(values), values)


def stats_of(samples: Iterable[float | None]) -> Stats | None:
    """stats() of the samples that could be measured; None when none could."""
    known = [s for s in samples if s is not None]
    return stats(known) if known else None


def median(value: Stats | float | None) -> float | None:
    return value.median if isinstance(value, Stats) else value


Value = Stats | float | str | None


@dataclass
class Figure:
    """One reported number (or word) with its optional target."""

    key: str            # measurement letter: a, a2, b, ...
    name: str
    value: Value
    unit: str = ""
    target: tuple[str, float | str] | None = None  # ("<=", 1.05) or ("==", "identical")
    note: str = ""

    @property
    def status(self) -> str:
        """Judged against the median: one slow run should not decide it."""
        value = self.value.median if isinstance(self.value, Stats) else self.value
        if value is None or (isinstance(value, str) and value.startswith(
                ("skipped", "failed"))):
            return "n/a" if self.target else "-"
        if self.target is None:
            return "-"
        op, want = self.target
        if op == "==":
            return "met" if value == want else "missed"
        if isinstance(value, str) or isinstance(want, str):
            return "n/a"
        return "met" if OPS[op](value, want) else "missed"

    def shown_value(self) -> str:
        return show(self.value, self.unit)

    def shown_target(self) -> str:
        if self.target is None:
            return "-"
        op, want = self.target
        return str(want) if op == "==" else f"{op} {show(want, self.unit)}"

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["target"] = self.shown_target() if self.target else None
        d["status"] = self.status
        return d


def number(value: float, unit: str = "") -> str:
    """``value`` in the precision its unit deserves, without the unit."""
    if unit == "x":
        return f"{value:.2f}"
    if unit == "s":
        # Whole seconds once the tenths are below the run-to-run noise.
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}"
    if unit == "MiB":
        return f"{value:.1f}"
    return f"{value:g}"


def show(value: Value, unit: str = "") -> str:
    """"231 s (min 225, max 240, n=3)" for a repeated figure, "1.03 x" for a ratio."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    suffix = f" {unit}" if unit else ""
    if isinstance(value, Stats):
        spread = f"n={value.n}" if value.n == 1 else (
            f"min {number(value.min, unit)}, max {number(value.max, unit)}, n={value.n}")
        return f"{number(value.median, unit)}{suffix} ({spread})"
    return f"{number(value, unit)}{suffix}"


def ratio(numerator: Stats | float | None, denominator: Stats | float | None) -> float | None:
    """numerator / denominator of the medians, or None when either is unknown
    or the denominator is not positive."""
    top, bottom = median(numerator), median(denominator)
    if top is None or bottom is None or bottom <= 0:
        return None
    return top / bottom


def mib(n_bytes: float | None) -> float | None:
    return None if n_bytes is None else n_bytes / 2**20


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


SUMMARY_HEADERS = ("figure", "median", "min", "max", "n", "target", "met/missed")


def summary_row(f: Figure) -> list[str]:
    """A figure's cells under SUMMARY_HEADERS; a ratio or a word has no spread."""
    if isinstance(f.value, Stats):
        s, unit = f.value, f" {f.unit}" if f.unit else ""
        spread = [f"{number(s.min, f.unit)}{unit}", f"{number(s.max, f.unit)}{unit}",
                  str(s.n)]
        shown = f"{number(s.median, f.unit)}{unit}"
    else:
        spread, shown = ["-", "-", "-"], f.shown_value()
    return [f"({f.key}) {f.name}", shown, *spread, f.shown_target(), f.status]


def summary_table(figures: Sequence[Figure]) -> str:
    return format_table(SUMMARY_HEADERS, [summary_row(f) for f in figures])


# --- (e) compression ----------------------------------------------------------------

@dataclass(frozen=True)
class CompressionResult:
    name: str
    time: Stats
    size: Stats  # bytes; mksquashfs is deterministic, so min == max unless it was not
    option: str | None = None

    @property
    def seconds(self) -> float:
        return self.time.median

    @property
    def size_varies(self) -> bool:
        return self.size.min != self.size.max


def compression_result(name: str, seconds: Sequence[float], sizes: Sequence[int],
                       option: str | None = None) -> CompressionResult:
    return CompressionResult(name, stats(seconds), stats(sizes), option)


@dataclass
class CompressionRun:
    """(e)'s results, kept for the Markdown report."""

    tree: str
    processors: int
    results: list[CompressionResult]


@dataclass
class Recommendation:
    choice: CompressionResult | None
    reference: CompressionResult | None
    tolerance: float
    candidates: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.choice is None or self.reference is None:
            return "recommendation: none (no results)"
        c, ref = self.choice, self.reference
        option = (f"--squash-compression {c.option}" if c.option
                  else "not selectable with --squash-compression")
        return (f"recommendation: {c.name} ({option}): {c.seconds:.1f} s, "
                f"{c.size.median / 2**20:.1f} MiB = {c.size.median / ref.size.median:.2f} x "
                f"the size and {c.seconds / ref.seconds:.2f} x the time of {ref.name} "
                f"(medians); the fastest within {self.tolerance:.0%} of {ref.name}'s size")


def recommend(results: Sequence[CompressionResult], reference: str = "xz",
              tolerance: float = 0.15) -> Recommendation:
    """The fastest compressor (median time) whose output is at most
    (1 + tolerance) times the reference's size (the smallest output when the
    reference is absent)."""
    if not results:
        return Recommendation(None, None, tolerance)
    ref = next((r for r in results if r.name == reference), None)
    if ref is None:
        ref = min(results, key=lambda r: r.size.median)
    limit = ref.size.median * (1 + tolerance)
    fits = [r for r in results if r.size.median <= limit]
    best = min(fits, key=lambda r: r.seconds)
    return Recommendation(best, ref, tolerance, [r.name for r in fits])


COMPRESSION_HEADERS = ("compressor", "time s", "min", "max", "n", "size MiB")


def compression_rows(results: Sequence[CompressionResult],
                     reference: str = "xz") -> tuple[list[str], list[list[str]]]:
    """Headers and rows of (e)'s table: times are medians with their spread,
    ratios are of medians."""
    ref = next((r for r in results if r.name == reference), None)
    rows = []
    for r in results:
        size = f"{r.size.median / 2**20:.1f}"
        if r.size_varies:
            size += f" (min {r.size.min / 2**20:.1f}, max {r.size.max / 2**20:.1f})"
        rows.append([r.name, number(r.time.median, "s"), number(r.time.min, "s"),
                     number(r.time.max, "s"), str(r.time.n), size,
                     f"{r.size.median / ref.size.median:.2f}" if ref else "-",
                     f"{r.seconds / ref.seconds:.2f}" if ref and ref.seconds else "-",
                     r.option or "(n/a)"])
    headers = [*COMPRESSION_HEADERS, f"size/{reference}", f"time/{reference}",
               "--squash-compression"]
    return headers, rows


def compression_table(results: Sequence[CompressionResult], reference: str = "xz") -> str:
    return format_table(*compression_rows(results, reference))


PhaseRuns = dict[str, list[tuple[float, dict[str, float]]]]


def phase_medians(phase_runs: PhaseRuns) -> dict[str, dict[str, float]]:
    """Per row: the median of each phase (0 where a run lacked it), of the
    total, and "other" (the total's median less the phases' medians)."""
    out: dict[str, dict[str, float]] = {}
    for row, runs in phase_runs.items():
        names = dict.fromkeys(p for _, found in runs for p in found)
        medians = {p: stats(found.get(p, 0.0) for _, found in runs).median for p in names}
        total = stats(t for t, _ in runs).median
        out[row] = {**medians, "other": max(0.0, total - sum(medians.values())),
                    "total": total}
    return out


def phase_rows(phase_runs: PhaseRuns) -> tuple[list[str], list[list[str]]]:
    """The phase breakdown as a table: a row per kind of build, a column per
    phase (in the order the builds logged them), seconds (medians)."""
    medians = phase_medians(phase_runs)
    columns = list(dict.fromkeys(p for m in medians.values() for p in m
                                 if p not in ("other", "total")))
    headers = ["build", "n", *columns, "other", "total"]
    rows = []
    for row, m in medians.items():
        cells = [f"{m[p]:.1f}" if p in m else "-" for p in [*columns, "other", "total"]]
        rows.append([row, str(len(phase_runs[row])), *cells])
    return headers, rows
