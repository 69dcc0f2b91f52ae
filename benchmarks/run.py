"""Benchmark vmdebootstrap against plain debootstrap/mmdebstrap + mksquashfs
and live-build, all in one run on the same package set and compression.

    sudo .venv/bin/python benchmarks/run.py [--runs N] [--quick] [--only a,b,...]
        [--json FILE] [--markdown FILE] [--update-readme]

See benchmarks/README.md for what each figure means and its target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import commands as cmd
from benchmarks import markdown as md
from benchmarks import measures as m
from benchmarks.bench import Bench
from benchmarks.compression import measure_e
from benchmarks.foreign import measure_g
from benchmarks.harness import CommandFailed, Runner, say, workspace
from benchmarks.iso import measure_c
from benchmarks.report import Figure, format_table, phase_medians, phase_rows, summary_table
from benchmarks.repro import measure_f

ALL = ("a", "a2", "b", "c", "d", "e", "f", "g")
QUICK = ("a2", "b", "d", "e")
NS_MARK = "VMDEB_BENCH_PRIVATE_MOUNTS"
# A failed measurement is listed against its main target, as "n/a".
HEADLINE_TARGETS: dict[str, tuple[str, float | str]] = {
    "a2": ("<=", 1.05), "b": ("<=", 20), "c": ("<=", 0.4), "f": ("==", "identical"),
    "g": ("<=", 3.0)}
FALLBACK_EPOCH = 1704067200  # 2024-01-01, when the mirror's Release date cannot be read
REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MEASURES: dict[str, Callable[[Bench], list[Figure]]] = {
    "a": m.measure_a, "a2": m.measure_a2, "b": m.measure_b, "c": measure_c,
    "d": m.measure_d, "e": measure_e, "g": measure_g}


def runs_count(text: str) -> int:
    """--runs: a whole number of at least 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {n}): every figure "
                                         "needs one measurement")
    return n


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Time vmdebootstrap against plain tools and live-build in one run.")
    p.add_argument("--runs", metavar="N", type=runs_count, default=3,
                   help="measure every timed figure N times and report the median, min "
                        "and max (default 3)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: only {','.join(QUICK)}, and 3 compressors in (e)")
    p.add_argument("--only", metavar="LIST",
                   help=f"comma-separated measurements to run, of {','.join(ALL)}")
    p.add_argument("--json", metavar="FILE", type=Path, help="also write the results here")
    p.add_argument("--markdown", metavar="FILE", type=Path,
                   help="also write the performance tables here as Markdown")
    p.add_argument("--update-readme", action="store_true",
                   help=f"put the Markdown tables between {md.BEGIN} and {md.END} "
                        "in README.md")
    p.add_argument("--keep-logs", metavar="DIR", type=Path,
                   help="copy every command's log here before the workspace goes")
    p.add_argument("--tmpdir", metavar="DIR",
                   help="where the workspace is made (default: $TMPDIR or /tmp)")
    p.add_argument("--no-private-mounts", action="store_true",
                   help="do not run in a private mount namespace (mounts then show on the host)")
    args = p.parse_args(argv)
    args.selected = selected(args.only, args.quick)
    return args


def selected(only: str | None, quick: bool) -> list[str]:
    """The measurements to run, in the order of ALL."""
    if only is None:
        return list(QUICK if quick else ALL)
    wanted = {w.strip() for w in only.split(",") if w.strip()}
    unknown = sorted(wanted - set(ALL))
    if unknown:
        raise SystemExit(f"run.py: error: --only: unknown measurement(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(ALL)}")
    return [k for k in ALL if k in wanted]


def child_env(ws: Path) -> dict[str, str]:
    """The builds' environment: no stray SOURCE_DATE_EPOCH, temp files in the
    workspace, a C locale, and the sbin dirs on PATH."""
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    path = env.get("PATH", "/usr/bin:/bin").split(":")
    for d in ("/usr/local/sbin", "/usr/sbin", "/sbin"):
        if d not in path:
            path.insert(0, d)
    env.update(PATH=":".join(path), TMPDIR=str(ws / "tmp"), LC_ALL="C.UTF-8", LANG="C.UTF-8")
    return env


def reexec_in_private_mounts(argv: Sequence[str]) -> None:
    """Re-run in a new mount namespace: our builds' mounts do not show on the
    host (nor confuse other builds' checks) and vanish if we are killed.
    Slave propagation lets the host's unmounts reach our copy of its mounts."""
    if os.environ.get(NS_MARK):
        return
    os.environ[NS_MARK] = "1"
    os.execvp("unshare", ["unshare", "--mount", "--propagation", "slave",
                          sys.executable, os.path.abspath(__file__), *argv])


def tool_versions() -> dict[str, str]:
    from vmdebootstrap import __version__

    versions = {"vmdebootstrap": __version__}
    for name, argv in {"mmdebstrap": ["mmdebstrap", "--version"],
                       "debootstrap": ["debootstrap", "--version"],
                       "mksquashfs": ["mksquashfs", "-version"],
                       "live-build": ["lb", "--version"]}.items():
        try:
            out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
            versions[name] = (out.strip().splitlines() or ["?"])[0]
        except OSError:
            versions[name] = "not installed"
    return versions


def release_epoch(mirror: str) -> int:
    from vmdebootstrap.errors import VmdebootstrapError
    from vmdebootstrap.root.cache import fetch_release
    from vmdebootstrap.root.reproducible import release_date

    try:
        return release_date(fetch_release(mirror, cmd.DISTRIBUTION))
    except VmdebootstrapError as exc:
        say(f"cannot read the mirror's Release date ({exc}); using {FALLBACK_EPOCH}")
        return FALLBACK_EPOCH


def run_one(bench: Bench, key: str, epoch: int) -> list[Figure]:
    say(f"=== measurement ({key}) ===")
    try:
        return measure_f(bench, epoch) if key == "f" else MEASURES[key](bench)
    except (CommandFailed, OSError, ValueError) as exc:
        bench.note(f"({key}) failed: {exc}")
        return [Figure(key, "measurement", f"failed: {exc}", target=HEADLINE_TARGETS.get(key))]


def print_figures(figures: Sequence[Figure]) -> None:
    for f in figures:
        note = f"   [{f.note}]" if f.note else ""
        print(f"({f.key}) {f.name}: {f.shown_value()}{note}", flush=True)


def busy_note(bench: Bench, when: str) -> None:
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    if load > 0.5 * cpus:
        bench.note(f"machine busy {when}: load average {load:.1f} on {cpus} CPUs; "
                   "times are noisy")


def command_line(argv: Sequence[str], python: str = sys.executable) -> str:
    """How run.py was started, with the interpreter relative to the checkout
    when it is the checkout's venv (the README's command)."""
    path = Path(python)
    shown = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else python
    return shlex.join([shown, "benchmarks/run.py", *argv])


def check_outputs(args: argparse.Namespace) -> str | None:
    """Why the reports could not be written, found before hours of builds."""
    if args.update_readme:
        try:
            md.replace_block(README.read_text(), "")
        except (OSError, ValueError) as exc:
            return f"--update-readme: {exc}"
    for option, path in (("--json", args.json), ("--markdown", args.markdown)):
        if path is not None and not path.resolve().parent.is_dir():
            return f"{option}: no directory {path.resolve().parent}"
    return None


def _plain(value: object) -> object:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"not JSON: {value!r}")


def results(args: argparse.Namespace, bench: Bench, figures: list[Figure],
            started: float, versions: dict[str, str], header: str) -> dict[str, object]:
    data = {
        "selected": args.selected, "quick": args.quick, "runs": args.runs,
        "measured": header,
        "distribution": cmd.DISTRIBUTION, "arch": cmd.ARCH, "variant": cmd.VARIANT,
        "compression": cmd.COMPRESSION, "packages": bench.packages("squash"),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(),
                 "load_average_at_end": os.getloadavg()},
        "tools": versions, "wall_s": time.monotonic() - started,
        "figures": [f.as_dict() for f in figures],
        "details": bench.details, "notes": bench.notes,
        "phases": phase_medians(bench.phase_runs),
    }
    # Through JSON first, so the mirror is redacted inside the dataclasses too.
    redacted = cmd.redact(json.loads(json.dumps(data, default=_plain)), bench.mirror)
    assert isinstance(redacted, dict)
    return redacted


def write_reports(args: argparse.Namespace, bench: Bench, figures: list[Figure],
                  data: dict[str, object], header: str) -> None:
    if args.json:
        args.json.write_text(json.dumps(data, indent=1) + "\n")
        say(f"results written to {args.json}")
    if not (args.markdown or args.update_readme):
        return
    text = md.render(figures, bench.compression, bench.notes, header, bench.phase_runs)
    text = str(cmd.redact(text, bench.mirror))
    if args.markdown:
        args.markdown.write_text(text)
        say(f"Markdown tables written to {args.markdown}")
    if args.update_readme:
        changed = md.update_readme(README, text)
        say(f"{README} {'updated' if changed else 'already held these tables'}")


def measure_all(args: argparse.Namespace, mirror: str, started: float,
                header: str) -> tuple[Bench, list[Figure], dict[str, object]]:
    figures: list[Figure] = []
    with workspace(args.tmpdir, args.keep_logs) as ws:
        bench = Bench(ws, Runner(ws / "logs", child_env(ws)), mirror, sys.executable,
                      quick=args.quick, runs=args.runs)
        busy_note(bench, "at the start")
        epoch = release_epoch(mirror) if "f" in args.selected else FALLBACK_EPOCH
        for key in args.selected:
            got = run_one(bench, key, epoch)
            print_figures(got)
            figures += got
        busy_note(bench, "at the end")
        data = results(args, bench, figures, started, tool_versions(), header)
    return bench, figures, data


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    problem = check_outputs(args)
    if problem:
        print(f"run.py: error: {problem}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("run.py: error: the builds need root: sudo .venv/bin/python benchmarks/run.py",
              file=sys.stderr)
        return 2
    if not args.no_private_mounts:
        reexec_in_private_mounts(argv)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    from vmdebootstrap.host.apt_sources import default_mirror

    mirror = default_mirror()
    started = time.monotonic()
    header = md.measured_line(md.host_facts(), datetime.now(UTC), command_line(argv))
    try:
        bench, figures, data = measure_all(args, mirror, started, header)
    except KeyboardInterrupt:
        say("interrupted; the workspace was cleaned up")
        return 130
    print("\nSummary (median of each figure's runs, min, max)\n" + summary_table(figures))
    if bench.phase_runs:
        print("\nPhases of our builds (seconds, medians)\n"
              + format_table(*phase_rows(bench.phase_runs)))
    for note in bench.notes:
        print(f"note: {note}")
    print(f"total wall time {time.monotonic() - started:.0f} s")
    write_reports(args, bench, figures, data, header)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
