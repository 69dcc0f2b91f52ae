"""Command lines of every tool the benchmark runs, and parsers of what they print.

Pure functions only (no I/O), so tests/unit/test_benchmarks.py can check them.
The mirror is always a parameter: it is read at run time from the host's apt
sources, never written down here.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

DISTRIBUTION = "bookworm"
ARCH = "amd64"
VARIANT = "minbase"
USER_PACKAGES = ("sudo",)
KERNEL = "linux-image-amd64"
COMPRESSION = "zstd"

# Runs vmdebootstrap in this Python process and, at exit, writes the peak RSS
# of the process itself and of its (reaped) children to $VMDEB_BENCH_RUSAGE.
RUSAGE_WRAPPER = """\
import atexit, json, os, resource, runpy, sys

def _report():
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(os.environ["VMDEB_BENCH_RUSAGE"], "w") as fh:
        json.dump({"self_maxrss_kib": me.ru_maxrss, "children_maxrss_kib": kids.ru_maxrss,
                   "self_cpu_s": me.ru_utime + me.ru_stime,
                   "children_cpu_s": kids.ru_utime + kids.ru_stime}, fh)

atexit.register(_report)
sys.argv = ["vmdebootstrap", *sys.argv[1:]]
runpy.run_module("vmdebootstrap", run_name="__main__", alter_sys=True)
"""


# --- vmdebootstrap -----------------------------------------------------------------

def ours_args(outputs: Sequence[tuple[str, Path]], *, mirror: str, log: Path,
              cache_dir: Path | None, compression: str | None = COMPRESSION,
              hook: Path | None = None, layered: bool = False, arch: str = ARCH,
              extra: Sequence[str] = ()) -> list[str]:
    """vmdebootstrap's arguments; ``outputs``: (kind, path) pairs such as
    ("squash", DIR) or ("iso", FILE); ``cache_dir`` None means --no-cache;
    ``compression`` None leaves vmdebootstrap's default (xz)."""
    args = ["--no-default-configs"]
    for kind, path in outputs:
        args += [f"--{kind}", str(path)]
    args += ["--distribution", DISTRIBUTION, "--arch", arch, "--mirror", mirror,
             "--debootstrapopts", f"variant={VARIANT}"]
    for package in USER_PACKAGES:
        args += ["--package", package]
    if compression is not None:
        args += ["--squash-compression", compression]
    if layered:
        args.append("--layered")
    args += ["--cache-dir", str(cache_dir)] if cache_dir else ["--no-cache"]
    if hook:
        args += ["--customize", str(hook)]
    return [*args, *extra, "--verbose", "--log", str(log)]


def wrapped(python: str, args: Sequence[str]) -> list[str]:
    """vmdebootstrap run under the peak-memory wrapper."""
    return [python, "-c", RUSAGE_WRAPPER, *args]


def dry_run_args(args: Sequence[str]) -> list[str]:
    """The same build as a dry run: no log file (a dry run writes nothing)."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--log":
            skip = True
            continue
        out.append(arg)
    return [*out, "--dry-run"]


def parse_dry_run_packages(text: str) -> list[str]:
    """The package list of ``vmdebootstrap --dry-run``'s "packages:" line."""
    for line in text.splitlines():
        if line.startswith("packages:"):
            value = line.partition(":")[2].strip()
            if value == "(none)":
                return []
            return [p.strip() for p in value.split(",") if p.strip()]
    raise ValueError("no 'packages:' line in the dry-run output")


# --- plain tools -----------------------------------------------------------------

def debootstrap_argv(packages: Sequence[str], root: Path, mirror: str) -> list[str]:
    return ["debootstrap", f"--arch={ARCH}", f"--variant={VARIANT}",
            f"--include={','.join(packages)}", DISTRIBUTION, str(root), mirror]


def mmdebstrap_argv(packages: Sequence[str], root: Path, mirror: str) -> list[str]:
    return ["mmdebstrap", f"--architectures={ARCH}", f"--variant={VARIANT}",
            f"--include={','.join(packages)}", DISTRIBUTION, str(root), mirror]


def mksquashfs_argv(root: Path, output: Path, comp_args: Sequence[str],
                    processors: int | None = None) -> list[str]:
    argv = ["mksquashfs", str(root), str(output), "-noappend", "-no-progress", *comp_args]
    if processors:
        argv += ["-processors", str(processors)]
    return argv


@dataclass(frozen=True)
class Compressor:
    name: str
    args: tuple[str, ...]
    option: str | None  # the --squash-compression value giving the same, if any


COMPRESSORS = (
    Compressor("xz", ("-comp", "xz"), None),  # ours adds -b 1M to xz
    Compressor("xz -b 1M", ("-comp", "xz", "-b", "1M"), "xz"),
    Compressor("zstd", ("-comp", "zstd"), "zstd"),
    Compressor("zstd:3", ("-comp", "zstd", "-Xcompression-level", "3"), "zstd:3"),
    Compressor("zstd:6", ("-comp", "zstd", "-Xcompression-level", "6"), "zstd:6"),
    Compressor("zstd:19", ("-comp", "zstd", "-Xcompression-level", "19"), "zstd:19"),
    Compressor("gzip", ("-comp", "gzip"), "gzip"),
    Compressor("lz4", ("-comp", "lz4"), "lz4"),
    Compressor("lzo", ("-comp", "lzo"), "lzo"),
)
QUICK_COMPRESSORS = ("xz", "zstd", "lz4")


def compressors(quick: bool) -> list[Compressor]:
    return [c for c in COMPRESSORS if not quick or c.name in QUICK_COMPRESSORS]


# --- our log ------------------------------------------------------------------------

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ([A-Z]+) (.*)$")


@dataclass(frozen=True)
class LogEntry:
    time: datetime
    level: str
    message: str


def parse_log(text: str) -> list[LogEntry]:
    """Timestamped lines of a --log file (continuation lines are skipped)."""
    entries = []
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if m:
            entries.append(LogEntry(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"),
                                    m.group(2), m.group(3)))
    return entries


def _first(entries: Sequence[LogEntry], prefix: str) -> LogEntry | None:
    return next((e for e in entries if e.message.startswith(prefix)), None)


def _last(entries: Sequence[LogEntry], prefix: str) -> LogEntry | None:
    return next((e for e in reversed(entries) if e.message.startswith(prefix)), None)


def _span(start: LogEntry | None, end: LogEntry | None) -> float | None:
    if start is None or end is None:
        return None
    return (end.time - start.time).total_seconds()


def span(entries: Sequence[LogEntry], start: str, end: str) -> float | None:
    """Seconds from the first line starting with ``start`` to the first one
    after it starting with ``end``."""
    first = _first(entries, start)
    if first is None:
        return None
    rest = entries[entries.index(first):]
    return _span(first, _first(rest, end))


def _mmdebstrap_line(entries: Sequence[LogEntry]) -> LogEntry | None:
    """The bootstrap's own "+ mmdebstrap" line (not "+ mmdebstrap --version")."""
    return next((e for e in entries if e.message.startswith("+ mmdebstrap ")
                 and e.message.split()[2:] != ["--version"]), None)


PHASE = re.compile(r"^phase ([a-z][a-z-]*): ([0-9]+(?:\.[0-9]+)?) s$")


def phases(entries: Sequence[LogEntry]) -> dict[str, float]:
    """Our log's ``phase NAME: 1.234 s`` lines: seconds per phase, in the
    order of first appearance, a phase's repeated lines added up."""
    found: dict[str, float] = {}
    for e in entries:
        m = PHASE.match(e.message)
        if m:
            found[m.group(1)] = found.get(m.group(1), 0.0) + float(m.group(2))
    return found


# The phases of our bootstrap stage: the Release file and cache key, the
# bootstrap itself, publishing the root in the cache, mounting it.
BOOTSTRAP_PHASES = ("release", "bootstrap", "cache-store", "cache-use")


def bootstrap_stage(entries: Sequence[LogEntry]) -> dict[str, float | None]:
    """Seconds of our bootstrap stage and its parts: from the log's phase
    lines, or else from its timestamps (one-second resolution)."""
    timed = phases(entries)
    if "bootstrap" in timed:
        return {"stage_s": sum(timed.get(p, 0.0) for p in BOOTSTRAP_PHASES),
                "mmdebstrap_s": timed["bootstrap"],
                "cache_lookup_s": timed.get("release"),
                "cache_store_s": timed.get("cache-store")}
    start = _first(entries, "Bootstrapping ")
    end = _first(entries, "root cache: stored") or _first(entries, "Configuring the system")
    mm_start = _mmdebstrap_line(entries)
    mm_end = _last(entries, "mmdebstrap: ")
    store_start = _first(entries, "+ tar --create")
    return {
        "stage_s": _span(start, end),
        "mmdebstrap_s": _span(mm_start, mm_end),
        "cache_lookup_s": _span(start, mm_start),
        "cache_store_s": _span(store_start, _first(entries, "root cache: stored")),
    }


def mmdebstrap_argv_from_log(entries: Sequence[LogEntry]) -> list[str]:
    line = _mmdebstrap_line(entries)
    if line is None:
        raise ValueError("no '+ mmdebstrap' bootstrap line in the log")
    return shlex.split(line.message[2:])


def is_cache_arg(arg: str) -> bool:
    """An mmdebstrap option our package cache adds (cache.Cache.mmdebstrap_args)."""
    return (arg == "--skip=essential/unlink"
            or (arg.startswith("--setup-hook=") and "/var/cache/apt/archives" in arg)
            or arg.startswith("--customize-hook=sync-out "))


def plain_from_ours(argv: Sequence[str], root: Path) -> list[str]:
    """Our mmdebstrap argv without the package cache's hooks, into ``root``.
    The last three words are suite, target and mirror."""
    kept = [a for a in argv if not is_cache_arg(a)]
    if len(kept) < 4:
        raise ValueError(f"not an mmdebstrap command line: {argv}")
    kept[-2] = str(root)
    return kept


# --- live-build --------------------------------------------------------------------

def lb_config_argv(mirror: str, compression: str = COMPRESSION) -> list[str]:
    """A minimal live ISO like ours: same suite, variant, area, compression,
    no recommends, no installer, firmware, security/updates or memtest."""
    return [
        "lb", "config", "--mode", "debian", "--distribution", DISTRIBUTION,
        "--architecture", ARCH, "--binary-images", "iso-hybrid",
        "--bootloaders", "syslinux grub-efi",
        "--apt-recommends", "false", "--apt-indices", "false",
        "--debian-installer", "none", "--archive-areas", "main",
        "--mirror-bootstrap", mirror, "--mirror-chroot", mirror, "--mirror-binary", mirror,
        "--security", "false", "--updates", "false",
        "--firmware-binary", "false", "--firmware-chroot", "false",
        "--memtest", "none", "--win32-loader", "false", "--zsync", "false",
        "--linux-packages", "linux-image", "--linux-flavours", ARCH,
        "--debootstrap-options", f"--variant={VARIANT}",
        "--chroot-squashfs-compression-type", compression.partition(":")[0],
        "--bootappend-live", "boot=live components",
        "--cache", "true", "--cache-packages", "true", "--cache-stages", "bootstrap",
    ]


def lb_package_list(packages: Sequence[str]) -> str:
    """config/package-lists/live.list.chroot: our packages but the kernel
    (live-build installs that itself); replaces live-build's default list so
    that live-config is not added."""
    return "".join(f"{p}\n" for p in packages if not p.startswith("linux-image"))


# --- reports -------------------------------------------------------------------------

def redact(value: object, secret: str, placeholder: str = "$MIRROR") -> object:
    """``value`` (JSON-like) with every occurrence of ``secret`` replaced."""
    if isinstance(value, str):
        return value.replace(secret, placeholder) if secret else value
    if isinstance(value, dict):
        return {k: redact(v, secret, placeholder) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, secret, placeholder) for v in value]
    return value
