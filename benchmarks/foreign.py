"""(g) live ISOs of three architectures from this host: amd64 (native),
i386 (native, 32-bit) and arm64 (foreign, through qemu-user binfmt).

For each: a cold --iso (fresh cache), a warm --iso after a hook change
(the same cache), the ISO's size and, once, the boot test's time to the
login prompt under TCG.  Targets: a cold arm64 ISO within 3 times the cold
amd64 one, and a warm arm64 rebuild within 2 minutes.  Rounds go amd64,
i386, arm64, so that a drift in the machine's speed touches all three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.bench import Bench
from benchmarks.harness import CommandFailed, file_size
from benchmarks.report import Figure, mib, ratio, stats

ARCHES = ("amd64", "i386", "arm64")
LOGIN = ("--user", "user/live", "--sudo", "--serial-console")
BOOT_FIRMWARE = {"amd64": "bios", "i386": "bios", "arm64": "uefi"}
COLD_RATIO = 3.0   # arm64 cold / amd64 cold
WARM_LIMIT = 120.0  # s, arm64 warm rebuild after a hook change


@dataclass
class ArchRuns:
    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    iso_bytes: int | None = None
    login_s: float | None = None
    boot_error: str | None = None


def login_time(iso: Path, arch: str) -> tuple[float | None, str | None]:
    """Seconds to the login prompt (logged in, sudo checked), or why not."""
    from vmdebootstrap.boot.boottest import boot_test

    report = boot_test(iso, firmware=BOOT_FIRMWARE[arch], arch=arch, user="user",
                       password="live", command=None, timeout=900, media="iso", accel="tcg")
    return report.seconds_to_login, (None if report.ok else report.error)


def one_round(bench: Bench, arch: str, n: int, runs: ArchRuns) -> None:
    top = bench.dir(f"g-{arch}-{n}")
    cache = top / "cache"
    try:
        cold_hook = bench.write_hook(top / "cold.sh", f"built by the benchmark ({arch}, cold)")
        cold = bench.ours(f"ours-cold-iso-{arch}-{n}", [("iso", top / "cold.iso")],
                          cache=cache, hook=cold_hook, arch=arch, extra=LOGIN,
                          row=f"cold --iso {arch} (zstd)")
        runs.cold.append(cold.seconds)
        runs.iso_bytes = file_size(top / "cold.iso")
        if runs.login_s is None and runs.boot_error is None:
            runs.login_s, runs.boot_error = login_time(top / "cold.iso", arch)
        (top / "cold.iso").unlink(missing_ok=True)
        warm_hook = bench.write_hook(top / "warm.sh", f"built by the benchmark ({arch}, warm)")
        warm = bench.ours(f"ours-warm-iso-{arch}-{n}", [("iso", top / "warm.iso")],
                          cache=cache, hook=warm_hook, arch=arch, extra=LOGIN,
                          row=f"warm --iso {arch}, hook changed (zstd)")
        runs.warm.append(warm.seconds)
    finally:
        bench.drop(top)


def measure_g(bench: Bench) -> list[Figure]:
    found = {arch: ArchRuns() for arch in ARCHES}
    try:
        for n in range(1, bench.runs + 1):
            for arch in ARCHES:
                one_round(bench, arch, n, found[arch])
    except CommandFailed as exc:
        return [Figure("g", "ratio arm64 cold/amd64 cold", f"failed: {exc}",
                       target=("<=", COLD_RATIO))]
    figures: list[Figure] = []
    for arch in ARCHES:
        runs = found[arch]
        boot = (f"login after {runs.login_s:.0f} s ({BOOT_FIRMWARE[arch]}, TCG)"
                if runs.boot_error is None and runs.login_s is not None
                else f"boot failed: {runs.boot_error}")
        figures += [
            Figure("g", f"ours cold --iso {arch}", stats(runs.cold), "s",
                   note=f"ISO {mib(runs.iso_bytes) or 0:.1f} MiB; {boot}"),
            Figure("g", f"ours warm --iso {arch}, hook changed", stats(runs.warm), "s",
                   target=("<=", WARM_LIMIT) if arch == "arm64" else None)]
    bench.details["g"] = {arch: vars(runs) for arch, runs in found.items()}
    cold_ratio = ratio(stats(found["arm64"].cold), stats(found["amd64"].cold))
    figures.append(Figure("g", "ratio arm64 cold/amd64 cold", cold_ratio, "x",
                          target=("<=", COLD_RATIO)))
    figures.append(Figure("g", "ratio i386 cold/amd64 cold",
                          ratio(stats(found["i386"].cold), stats(found["amd64"].cold)), "x"))
    return figures
