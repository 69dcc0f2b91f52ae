"""Caches shared by builds: downloaded packages, and bootstrapped roots.

The root cache stores the tree as it is right after bootstrap and package
installation, under a key made of everything that decides that tree; a build
with the same key starts from it and only configures, customises and writes
outputs.  Writers take an exclusive lock on the cache; files appear in it by
rename only, so a reader never sees a half-written one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap import __version__
from vmdebootstrap.errors import MirrorError
from vmdebootstrap.host.digest import file_sha256
from vmdebootstrap.host.publish import staged_file
from vmdebootstrap.host.run import Runner
from vmdebootstrap.intent.plan import Plan
from vmdebootstrap.root.bootstrap import bootstrap, remove_handler

log = logging.getLogger("vmdebootstrap")

FORMAT = 2  # 2: roots no longer carry the build host's resolv.conf
KEEP_ROOTS = 6  # bootstrapped roots kept; the least recently used go first


@dataclass(frozen=True)
class CacheKey:
    fields: tuple[tuple[str, str], ...]

    @property
    def digest(self) -> str:
        text = json.dumps(dict(self.fields), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def as_dict(self) -> dict[str, str]:
        return dict(self.fields)


def fetch_release(mirror: str, suite: str, timeout: float = 30) -> bytes:
    """The mirror's signed Release file: its hash pins the mirror's state."""
    base = mirror.rstrip("/")
    last: Exception | None = None
    for name in ("InRelease", "Release"):
        try:
            with urllib.request.urlopen(f"{base}/dists/{suite}/{name}", timeout=timeout) as r:
                data: bytes = r.read()
                return data
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = exc
    raise MirrorError(f"cannot read the Release file of {suite} from {mirror}: {last}")


class MirrorRelease:
    """The mirror's Release file, fetched at most once per build: the cache
    key hashes it and a reproducible build takes its Date, so the two can
    never see different states of the mirror."""

    def __init__(self, mirror: str, suite: str,
                 fetch: Callable[[str, str], bytes] = fetch_release) -> None:
        self.mirror, self.suite, self._fetch = mirror, suite, fetch
        self._data: bytes | None = None

    def data(self) -> bytes:
        if self._data is None:
            self._data = self._fetch(self.mirror, self.suite)
        return self._data


def make_key(plan: Plan, release: bytes, tool_version: str) -> CacheKey:
    fields = {
        "format": str(FORMAT),
        "vmdebootstrap": __version__,
        "tool": f"{plan.bootstrap_tool} {tool_version}",
        "distribution": plan.distribution,
        "arch": plan.arch,
        "mirror": plan.mirror.rstrip("/"),
        "release": hashlib.sha256(release).hexdigest(),
        "variant": plan.variant or "",
        "components": ",".join(plan.components),
        "bootstrap-options": " ".join(f"{k}={v}" if v is not None else k
                                      for k, v in plan.bootstrap_opts),
        "packages": ",".join(sorted(plan.packages)),
        "custom-packages": ",".join(f"{d.name}:{file_sha256(d)}"
                                    for d in plan.custom_debs),
        "check-gpg": "yes" if plan.check_signatures else "no",
    }
    return CacheKey(tuple(sorted(fields.items())))


def explain_miss(key: CacheKey, others: list[dict[str, str]]) -> str:
    """Why the cache has no entry: what differs from the closest one."""
    mine = key.as_dict()
    same_target = [o for o in others if o.get("distribution") == mine["distribution"]
                   and o.get("arch") == mine["arch"]]
    if not same_target:
        return f"no cached root for {mine['distribution']} {mine['arch']} yet"
    closest = min(same_target, key=lambda o: sum(o.get(k) != v for k, v in mine.items()))
    differ = sorted(k for k, v in mine.items() if closest.get(k) != v)
    reasons = {"release": "the mirror's Release file changed",
               "packages": "the package list differs"}
    return "; ".join(reasons.get(k, f"{k} differs") for k in differ)


class Cache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.debs = path / "debs"
        self.roots = path / "roots"

    def prepare(self) -> None:
        for d in (self.path, self.debs, self.roots):
            d.mkdir(parents=True, exist_ok=True, mode=0o755)

    @contextlib.contextmanager
    def locked(self, shared: bool = False) -> Iterator[None]:
        """Readers (lookup and restore) share the lock; writers (new
        entries, eviction) hold it alone, so an entry is never deleted
        while another build restores it."""
        self.prepare()
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another build using the cache %s", self.path)
                fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # -- bootstrapped roots -------------------------------------------------
    def _entry(self, key: CacheKey) -> tuple[Path, Path]:
        return self.roots / f"{key.digest}.tar.zst", self.roots / f"{key.digest}.json"

    def lookup(self, key: CacheKey) -> tuple[Path | None, str]:
        tarball, meta = self._entry(key)
        if tarball.is_file() and meta.is_file():
            os.utime(meta)  # most recently used
            return tarball, "hit"
        others = []
        for m in self.roots.glob("*.json") if self.roots.is_dir() else []:
            with contextlib.suppress(OSError, ValueError):
                others.append(json.loads(m.read_text()))
        return None, explain_miss(key, others)

    def restore(self, runner: Runner, tarball: Path, root: Path) -> None:
        runner.run(["tar", "--extract", "--file", str(tarball), "--numeric-owner",
                    "--xattrs", "--xattrs-include=*", "--acls", "--use-compress-program=zstd -d",
                    "--directory", str(root)], label="tar", what="restoring the cached root failed")

    def restore_if_cached(self, runner: Runner, key: CacheKey, root: Path) -> str:
        """Restore the entry for ``key`` into ``root``: "hit", or why not."""
        with self.locked(shared=True):
            entry, why = self.lookup(key)
            if entry is not None:
                self.restore(runner, entry, root)
        return why

    def store(self, runner: Runner, key: CacheKey, root: Path) -> None:
        """The tarball is written without the lock (readers go on meanwhile)
        and appears by rename; only publishing the entry and eviction
        take the lock."""
        tarball, meta = self._entry(key)
        with staged_file(tarball) as tmp:
            runner.run(["tar", "--create", "--file", str(tmp), "--numeric-owner",
                        "--xattrs", "--xattrs-include=*", "--acls", "--sort=name",
                        "--use-compress-program=zstd -T0 -3 -q",
                        "--directory", str(root), "."],
                       label="tar", what="storing the root in the cache failed")
        with self.locked(), staged_file(meta) as mtmp:
            mtmp.write_text(json.dumps(key.as_dict(), indent=1, sort_keys=True) + "\n")
        with self.locked():
            self._evict()

    def _evict(self) -> None:
        metas = sorted(self.roots.glob("*.json"), key=lambda p: p.stat().st_mtime,
                       reverse=True)
        for old in metas[KEEP_ROOTS:]:
            old.with_suffix(".tar.zst").unlink(missing_ok=True)
            old.unlink(missing_ok=True)
            log.info("cache: dropped the old root %s", old.stem)

    # -- downloaded packages -------------------------------------------------
    def mmdebstrap_args(self, arch: str, outbox: Path) -> list[str]:
        """Hooks that seed apt's archive dir from the cache and collect what
        was downloaded; apt checks every cached .deb against the signed index
        before it uses it."""
        seed = (
            'mkdir -p "$1/var/cache/apt/archives" && '
            f'for f in "{self.debs}"/*_{arch}.deb "{self.debs}"/*_all.deb; do '
            '[ -e "$f" ] || continue; '
            'ln "$f" "$1/var/cache/apt/archives/" 2>/dev/null || '
            'cp "$f" "$1/var/cache/apt/archives/"; done'
        )
        return ["--skip=essential/unlink", f"--setup-hook={seed}",
                f"--customize-hook=sync-out /var/cache/apt/archives {outbox}"]

    def publish_debs(self, outbox: Path) -> int:
        added = 0
        with self.locked():
            for deb in sorted(outbox.glob("*.deb")):
                dest = self.debs / deb.name
                if dest.exists():
                    continue
                with staged_file(dest) as tmp:
                    tmp.unlink()
                    try:
                        os.link(deb, tmp)
                    except OSError:
                        shutil.copyfile(deb, tmp)
                added += 1
        return added


def tool_version(runner: Runner, tool: str) -> str:
    result = runner.run([tool, "--version"], capture=True, check=False)
    return (result.stdout.strip().splitlines() or ["unknown"])[0]


def bootstrap_with_cache(plan: Plan, runner: Runner, root: Path, work: Path,
                         release: MirrorRelease) -> None:
    """Bootstrap ``root``, from the root cache when it has this exact tree."""
    if plan.cache_dir is None:
        log.info("caches not used (--no-cache)")
        bootstrap(plan, runner, root)
        return
    cache = Cache(plan.cache_dir)
    cache.prepare()
    key = None
    try:
        key = make_key(plan, release.data(), tool_version(runner, plan.bootstrap_tool))
    except MirrorError as exc:
        log.info("root cache not used: %s", exc)
    if key is not None:
        if plan.refresh_cache:
            log.info("root cache: refreshing %s (--refresh-cache)", key.digest)
        else:
            why = cache.restore_if_cached(runner, key, root)
            if why == "hit":
                log.info("root cache: hit %s; skipping the bootstrap", key.digest)
                return
            log.info("root cache: miss (%s)", why)
    extra: list[str] = []
    outbox = work / "debs"
    if plan.bootstrap_tool == "mmdebstrap":
        outbox.mkdir()
        extra = cache.mmdebstrap_args(plan.arch, outbox)
    bootstrap(plan, runner, root, extra)
    if extra:
        added = cache.publish_debs(outbox)
        log.info("package cache: %d new packages stored in %s", added, cache.debs)
    if key is not None:
        remove_handler(plan, root)
        cache.store(runner, key, root)
        log.info("root cache: stored %s", key.digest)
