"""Figures, targets, ratios and the printed tables (pure, unit tested)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt,
}


@dataclass
class Figure:
    """One reported number (or word) with its optional target."""

    key: str            # measurement letter: a, a2, b, ...
    name: str
    value: float | str | None
    unit: str = ""
    target: tuple[str, float | str] | None = None  # ("<=", 1.05) or ("==", "identical")
    note: str = ""

    @property
    def status(self) -> str:
        if self.value is None or (isinstance(self.value, str) and self.value.startswith(
                ("skipped", "failed"))):
            return "n/a" if self.target else "-"
        if self.target is None:
            return "-"
        op, want = self.target
        if op == "==":
            return "met" if self.value == want else "missed"
        if isinstance(self.value, str) or isinstance(want, str):
            return "n/a"
        return "met" if OPS[op](self.value, want) else "missed"

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


def show(value: float | str | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if unit == "x":
        return f"{value:.2f} x"
    if unit == "s":
        return f"{value:.1f} s"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:g}{' ' + unit if unit else ''}"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is unknown or the
    denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


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


def summary_table(figures: Sequence[Figure]) -> str:
    rows = [[f"({f.key}) {f.name}", f.shown_value(), f.shown_target(), f.status]
            for f in figures]
    return format_table(["figure", "value", "target", "met/missed"], rows)


@dataclass
class CompressionResult:
    name: str
    seconds: float
    size: int
    option: str | None = None


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
                f"{c.size / 2**20:.1f} MiB = {c.size / ref.size:.2f} x the size and "
                f"{c.seconds / ref.seconds:.2f} x the time of {ref.name}; the fastest "
                f"within {self.tolerance:.0%} of {ref.name}'s size")


def recommend(results: Sequence[CompressionResult], reference: str = "xz",
              tolerance: float = 0.15) -> Recommendation:
    """The fastest compressor whose output is at most (1 + tolerance) times
    the reference's size (the smallest output when the reference is absent)."""
    if not results:
        return Recommendation(None, None, tolerance)
    ref = next((r for r in results if r.name == reference), None)
    if ref is None:
        ref = min(results, key=lambda r: r.size)
    limit = ref.size * (1 + tolerance)
    fits = [r for r in results if r.size <= limit]
    best = min(fits, key=lambda r: r.seconds)
    return Recommendation(best, ref, tolerance, [r.name for r in fits])


def compression_table(results: Sequence[CompressionResult], reference: str = "xz") -> str:
    ref = next((r for r in results if r.name == reference), None)
    rows = []
    for r in results:
        rows.append([r.name, f"{r.seconds:.1f}", f"{r.size / 2**20:.1f}",
                     f"{r.size / ref.size:.2f}" if ref else "-",
                     f"{r.seconds / ref.seconds:.2f}" if ref and ref.seconds else "-",
                     r.option or "(n/a)"])
    return format_table(["compressor", "time s", "size MiB", f"size/{reference}",
                         f"time/{reference}", "--squash-compression"], rows)
