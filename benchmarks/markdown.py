"""The performance tables as Markdown, headed by when and where they were
measured, and their place in the project's README.md.

Pure but for host_facts(), which reads the host, and update_readme().
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from benchmarks.report import (
    SUMMARY_HEADERS,
    CompressionRun,
    Figure,
    PhaseRuns,
    compression_rows,
    phase_rows,
    recommend,
    summary_row,
)

BEGIN = "<!-- benchmarks:begin -->"
END = "<!-- benchmarks:end -->"
MEDIANS = ("Each figure is the median of n runs, shown with the smallest and largest; "
           "ratios are of the medians, and targets are judged against the medians.")


@dataclass(frozen=True)
class HostFacts:
    cpu: str
    cpus: int
    memory_gib: float | None
    kernel: str
    debian: str
    load: float  # 1-minute load average at the start


def cpu_model(cpuinfo: str) -> str:
    """The CPU's name from /proc/cpuinfo (x86's "model name", else the
    fields ARM and others use)."""
    for key in ("model name", "Hardware", "Processor", "cpu model", "cpu"):
        for line in cpuinfo.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return " ".join(value.split())
    return "unknown CPU"


def memory_gib(meminfo: str) -> float | None:
    found = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
    return int(found.group(1)) / 2**20 if found else None


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def host_facts() -> HostFacts:
    return HostFacts(cpu_model(_read("/proc/cpuinfo")), os.cpu_count() or 1,
                     memory_gib(_read("/proc/meminfo")), platform.release(),
                     _read("/etc/debian_version").strip() or "unknown",
                     os.getloadavg()[0])


def measured_line(facts: HostFacts, when: datetime, command: str) -> str:
    """When (UTC) and where the tables were measured, and how."""
    memory = f"{facts.memory_gib:.1f} GiB memory" if facts.memory_gib else "memory unknown"
    return (f"Measured {when:%Y-%m-%d %H:%M} UTC on {facts.cpu} ({facts.cpus} CPUs, "
            f"{memory}), kernel {facts.kernel}, Debian {facts.debian}, load average "
            f"{facts.load:.2f} at the start, with `{command}` (as root).")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |",
             "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_markdown(figures: Sequence[Figure]) -> str:
    return markdown_table([*SUMMARY_HEADERS, "note"],
                          [[*summary_row(f), f.note] for f in figures])


def compression_markdown(run: CompressionRun) -> str:
    headers, rows = compression_rows(run.results)
    caption = (f"(e) compression: mksquashfs of {run.tree}, with `-processors "
               f"{run.processors}`; times in seconds (median, min and max of n runs), "
               "sizes in MiB.")
    return "\n\n".join([caption, markdown_table(headers, rows),
                        recommend(run.results).line()])


PHASES = ("Phase breakdown of our builds: seconds, medians over n runs, from the "
          "`phase NAME: S s` lines of their logs (\"other\": the rest of the wall time: "
          "starting Python, the kernel copy, manifests, SBOM, checksums, publishing).")


def render(figures: Sequence[Figure], compression: CompressionRun | None,
           notes: Sequence[str], measured: str, phase_runs: PhaseRuns | None = None) -> str:
    """The whole Markdown report: the measured line, the summary table, the
    phase breakdown, (e)'s table and recommendation when (e) ran, and the
    run's notes."""
    parts = [measured, MEDIANS, summary_markdown(figures)]
    if phase_runs:
        parts += [PHASES, markdown_table(*phase_rows(phase_runs))]
    if compression is not None and compression.results:
        parts.append(compression_markdown(compression))
    if notes:
        parts.append("Notes:\n\n" + "\n".join(f"- {n}" for n in notes))
    return "\n\n".join(parts) + "\n"


def replace_block(text: str, body: str) -> str:
    """``text`` with what lies between the BEGIN and END markers replaced by
    ``body``; ValueError unless each marker is there once, BEGIN first."""
    begins, ends = text.count(BEGIN), text.count(END)
    if begins != 1 or ends != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"README.md must hold the lines {BEGIN} and then {END}, once each "
                         f"(found {begins} and {ends}): the tables go between them")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{body.strip()}\n{END}{tail}"


def update_readme(readme: Path, body: str) -> bool:
    """Put ``body`` between the markers of ``readme``; True if it changed.
    Written in place, so the file keeps its owner though we run as root."""
    text = readme.read_text()
    new = replace_block(text, body)
    if new != text:
        readme.write_text(new)
    return new != text
