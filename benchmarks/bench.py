"""State shared by the measurements: the workspace, the runner, and the
builds that several measurements reuse (our cold build, bootstrapped trees)."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import commands as cmd
from benchmarks.harness import CommandFailed, Runner, Timing, drop, file_size, say
from benchmarks.report import CompressionRun
from vmdebootstrap.host.digest import file_sha256

HOOK = """\
#!/bin/sh
# benchmark hook: the only thing that changes between the cold and warm build
set -e
echo '{text}' > "$1/etc/motd"
"""


@dataclass
class OursRun:
    timing: Timing
    log: Path
    rusage: dict[str, float]

    @property
    def seconds(self) -> float:
        return self.timing.seconds

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class ColdBuild:
    run: OursRun
    squash_bytes: int | None
    cache: Path  # only the first cold build's cache is kept, for (b)'s warm builds
    hook: Path


@dataclass
class Bench:
    ws: Path
    runner: Runner
    mirror: str
    python: str
    quick: bool = False
    runs: int = 3  # how often each timed figure is measured
    notes: list[str] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)
    trees: dict[str, Path] = field(default_factory=dict)
    iso_works: bool | None = None
    compression: CompressionRun | None = None
    # Our builds' phase lines, per row of the phase table: (total s, phases).
    phase_runs: dict[str, list[tuple[float, dict[str, float]]]] = field(default_factory=dict)
    _colds: list[ColdBuild] = field(default_factory=list)
    _cold_error: CommandFailed | None = None
    _packages: dict[str, list[str]] = field(default_factory=dict)

    def dir(self, name: str) -> Path:
        path = self.ws / name
        path.mkdir(parents=True, exist_ok=False)
        return path

    def note(self, text: str) -> None:
        say(text)
        self.notes.append(text)

    # --- running vmdebootstrap ----------------------------------------------------
    def ours(self, label: str, outputs: list[tuple[str, Path]], *, cache: Path | None,
             hook: Path | None = None, env: dict[str, str] | None = None,
             compression: str | None = cmd.COMPRESSION, layered: bool = False,
             row: str | None = None, arch: str = cmd.ARCH,
             extra: tuple[str, ...] = ()) -> OursRun:
        """Run our build; ``row``: the phase table's row its phases go to."""
        log = self.ws / "logs" / f"{label}.vmdebootstrap.log"
        rusage = self.ws / "logs" / f"{label}.rusage.json"
        args = cmd.ours_args(outputs, mirror=self.mirror, log=log, cache_dir=cache,
                             hook=hook, compression=compression, layered=layered, arch=arch,
                             extra=extra)
        extra = {**(env or {}), "VMDEB_BENCH_RUSAGE": str(rusage)}
        timing = self.runner.run(label, cmd.wrapped(self.python, args), env=extra,
                                 shown=[*(f"{k}={v}" for k, v in extra.items()),
                                        "vmdebootstrap", *args])
        usage = json.loads(rusage.read_text()) if rusage.exists() else {}
        run = OursRun(timing, log, usage)
        if row is not None:
            found = cmd.phases(cmd.parse_log(run.log_text()))
            self.phase_runs.setdefault(row, []).append((run.seconds, found))
        return run

    def packages(self, kind: str) -> list[str]:
        """The packages our --KIND build installs, from its dry run, so that
        the plain tools install exactly the same list."""
        if kind not in self._packages:
            args = cmd.ours_args([(kind, self.ws / f"dry-run.{kind}")], mirror=self.mirror,
                                 log=self.ws / "logs" / "dry-run.log", cache_dir=None)
            text = self.runner.output(f"dry-run-{kind}",
                                      [self.python, "-m", "vmdebootstrap",
                                       *cmd.dry_run_args(args)])
            self._packages[kind] = cmd.parse_dry_run_packages(text)
            say(f"packages of a --{kind} build: {', '.join(self._packages[kind])}")
        return self._packages[kind]

    def write_hook(self, path: Path, text: str) -> Path:
        path.write_text(HOOK.format(text=text))
        path.chmod(0o755)
        return path

    def colds(self) -> list[ColdBuild]:
        """Our cold --squash builds (each with its own fresh cache, with the
        hook), run ``runs`` times once and shared by (a), (a2), (b) and (d)."""
        if self._cold_error is not None:
            raise self._cold_error  # failed once: do not build again for each measurement
        while len(self._colds) < self.runs:
            try:
                self._colds.append(self._cold_build(len(self._colds) + 1))
            except CommandFailed as exc:
                self._cold_error = exc
                raise
        return self._colds

    def _cold_build(self, n: int) -> ColdBuild:
        top = self.dir(f"cold-{n}")
        hook = self.write_hook(top / "hook.sh", "built by the benchmark (cold)")
        squash, cache = top / "squash", top / "cache"
        run = self.ours(f"ours-cold-squash-{n}", [("squash", squash)], cache=cache, hook=hook,
                        row="cold --squash (zstd)")
        size = file_size(squash / "filesystem.squashfs")
        # Only the first cache is reused (by (b)); the rest would just fill the disk.
        self.drop(top if n > 1 else squash)
        return ColdBuild(run, size, cache, hook)

    # --- bootstrapped trees and files -----------------------------------------------
    def tree_for_compression(self) -> tuple[str, Path]:
        """A bootstrapped tree and its name: the plain debootstrap one from (a),
        else the plain mmdebstrap one from (a2), else a new plain mmdebstrap one."""
        for name in ("debootstrap", "mmdebstrap-ours-args", "mmdebstrap"):
            if name in self.trees:
                return name, self.trees[name]
        root = self.dir("tree-e") / "root"
        self.runner.run("mmdebstrap-for-e",
                        cmd.mmdebstrap_argv(self.packages("squash"), root, self.mirror))
        self.trees["mmdebstrap"] = root
        return "mmdebstrap", root

    def drop(self, path: Path) -> None:
        for name, tree in list(self.trees.items()):
            if tree == path or path in tree.parents:
                del self.trees[name]
        drop(path)


# --- comparing two trees ------------------------------------------------------------

sha256 = file_sha256


FIELDS = ("type", "mode", "uid", "gid", "mtime", "size", "content")


def manifest(root: Path) -> dict[str, tuple[object, ...]]:
    """path -> (type, mode, uid, gid, mtime, size, sha256 or link target)."""
    entries: dict[str, tuple[object, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                kind, content = "file", sha256(path)
            elif stat.S_ISLNK(st.st_mode):
                kind, content = "link", os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                kind, content = "dir", ""
            else:
                kind, content = "special", f"{st.st_rdev}"
            size = st.st_size if kind == "file" else 0
            entries[str(path.relative_to(root))] = (kind, stat.S_IMODE(st.st_mode), st.st_uid,
                                                   st.st_gid, int(st.st_mtime), size, content)
    return entries


def compare_manifests(first: dict[str, tuple[object, ...]],
                      second: dict[str, tuple[object, ...]]) -> list[str]:
    """One line per differing path, sorted: 'path: what differs'."""
    lines = []
    for path in sorted(set(first) | set(second)):
        a, b = first.get(path), second.get(path)
        if a == b:
            continue
        if a is None or b is None:
            lines.append(f"{path}: only in the {'second' if a is None else 'first'} build")
            continue
        differ = [name for name, x, y in zip(FIELDS, a, b, strict=True) if x != y]
        lines.append(f"{path}: {', '.join(differ)}")
    return lines
