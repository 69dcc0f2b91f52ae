"""Caches shared by builds: downloaded packages, and bootstrapped roots.

The root cache keeps the tree as it is right after bootstrap and package
installation, under a key made of everything that decides that tree; a build
with the same key starts from it and only configures, customises and writes
outputs.  A miss bootstraps straight into the cache (no extra pass over the
tree) and a hit copies nothing: the build mounts the cached tree as the
read-only lower layer of an overlay (vmdebootstrap.host.resources.overlay).
Entries appear by rename only, so a reader never sees a half-written one.
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
from vmdebootstrap.host import userns
from vmdebootstrap.host.digest import file_sha256
from vmdebootstrap.host.progress import phase
from vmdebootstrap.host.publish import staged_file
from vmdebootstrap.host.resources import remove_tree, temp_dir
from vmdebootstrap.host.run import Runner
from vmdebootstrap.intent.plan import Plan
from vmdebootstrap.root.bootstrap import bootstrap, remove_handler

log = logging.getLogger("vmdebootstrap")

FORMAT = 3  # 3: roots are directories, used in place
KEEP_ROOTS = 8  # bootstrapped roots kept (uncompressed); the least recently used go first


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
    ids = userns.id_maps()
    if ids:  # the tree's owners on disk mean these ids only through the same map
        fields["id-maps"] = ids
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
        """The cache-wide lock: writers of the package cache and of the
        roots' metadata hold it alone."""
        self.prepare()
        with _flock(self.path / ".lock", shared, f"another build using the cache {self.path}"):
            yield

    # -- bootstrapped roots -------------------------------------------------
    # A root is a directory, roots/DIGEST, that builds use in place as the
    # read-only lower layer of an overlay: nothing copies it on a hit, and a
    # miss bootstraps straight into it.  roots/DIGEST.lock is held shared
    # while a build uses the root, so eviction and --refresh-cache (which
    # take it alone) never remove a tree under a running build.
    def _entry(self, key: CacheKey) -> tuple[Path, Path]:
        return self.roots / key.digest, self.roots / f"{key.digest}.json"

    def entry_lock(self, digest: str, shared: bool) -> contextlib.AbstractContextManager[None]:
        return _flock(self.roots / f"{digest}.lock", shared,
                      f"another build using the cached root {digest}")

    def lookup(self, key: CacheKey) -> tuple[Path | None, str]:
        tree, meta = self._entry(key)
        if tree.is_dir() and meta.is_file():
            os.utime(meta)  # most recently used
            return tree, "hit"
        others = []
        for m in self.roots.glob("*.json") if self.roots.is_dir() else []:
            with contextlib.suppress(OSError, ValueError):
                others.append(json.loads(m.read_text()))
        return None, explain_miss(key, others)

    @contextlib.contextmanager
    def staging(self, runner: Runner) -> Iterator[Path]:
        """A directory inside the cache to bootstrap into (then publish()
        renames it into place): removed if the build fails or stops."""
        with temp_dir(runner, prefix=".new-", parent=self.roots) as tmp:
            yield tmp / "root"

    def publish(self, key: CacheKey, tree: Path, replace: bool) -> Path:
        """Make ``tree`` the entry for ``key`` (the caller holds the entry's
        lock alone).  An entry another build stored meanwhile is kept unless
        ``replace`` (--refresh-cache): both came from the same inputs."""
        final, meta = self._entry(key)
        if final.is_dir() and replace:
            self._drop_tree(final)
            self._drop_derived(key.digest)
        if not final.is_dir():
            meta.unlink(missing_ok=True)
            os.rename(tree, final)
        with self.locked(), staged_file(meta) as mtmp:
            mtmp.write_text(json.dumps(key.as_dict(), indent=1, sort_keys=True) + "\n")
        return final

    def _drop_tree(self, tree: Path) -> None:
        # Out of the way first, so that an interrupted removal leaves no
        # half tree under an entry's name.
        trash = self.roots / f".old-{tree.name}-{os.getpid()}"
        os.rename(tree, trash)
        remove_tree(trash)

    def _drop_derived(self, digest: str) -> None:
        """What was made from a root (--layered's base squashfs images)."""
        for derived in self.roots.glob(f"{digest}.*.squashfs"):
            derived.unlink(missing_ok=True)

    def evict(self, keep: int = KEEP_ROOTS) -> None:
        """Drop the least recently used roots beyond ``keep``, and what
        earlier formats or interrupted removals left; a root in use stays."""
        with self.locked():
            for stale in [*self.roots.glob(".old-*"), *self.roots.glob("*.tar.zst")]:
                if stale.is_dir():
                    remove_tree(stale)
                else:
                    stale.unlink(missing_ok=True)
            metas = sorted(self.roots.glob("*.json"), key=lambda p: p.stat().st_mtime,
                           reverse=True)
            for old in metas[keep:]:
                self._evict_one(old.stem)

    def _evict_one(self, digest: str) -> None:
        lock = self.roots / f"{digest}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("cache: keeping the old root %s, a build is using it", digest)
                return
            (self.roots / f"{digest}.json").unlink(missing_ok=True)
            if (self.roots / digest).is_dir():
                self._drop_tree(self.roots / digest)
            self._drop_derived(digest)
            lock.unlink(missing_ok=True)
            log.info("cache: dropped the old root %s", digest)
        finally:
            os.close(fd)

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


def root_key(plan: Plan, runner: Runner, release: MirrorRelease) -> CacheKey | None:
    try:
        return make_key(plan, release.data(), tool_version(runner, plan.bootstrap_tool))
    except MirrorError as exc:
        log.info("root cache not used: %s", exc)
        return None


@contextlib.contextmanager
def cached_root(plan: Plan, runner: Runner, work: Path,
                release: MirrorRelease) -> Iterator[Path | None]:
    """The bootstrapped tree for ``plan`` from the root cache (looked up,
    or bootstrapped into it on a miss), kept from eviction until exit; None
    when the cache is not used, and the caller bootstraps itself."""
    if plan.cache_dir is None:
        log.info("caches not used (--no-cache)")
        yield None
        return
    cache = Cache(plan.cache_dir)
    cache.prepare()
    with phase("release"):
        key = root_key(plan, runner, release)
    if key is None:
        yield None
        return
    if not plan.refresh_cache:
        with cache.entry_lock(key.digest, shared=True):
            tree, why = cache.lookup(key)
            if tree is not None:
                log.info("root cache: hit %s; skipping the bootstrap", key.digest)
                yield tree
                return
        log.info("root cache: miss (%s)", why)
    else:
        log.info("root cache: refreshing %s (--refresh-cache)", key.digest)
    with cache.staging(runner) as staged:
        bootstrap_for_cache(plan, runner, cache, staged, work)
        with phase("cache-store"), cache.entry_lock(key.digest, shared=False):
            tree = cache.publish(key, staged, replace=plan.refresh_cache)
    log.info("root cache: stored %s", key.digest)
    cache.evict()
    # Held shared again for the rest of the build.  (Between the two, only
    # a --refresh-cache of this very key could replace the tree.)
    with cache.entry_lock(key.digest, shared=True):
        yield tree


def bootstrap_for_cache(plan: Plan, runner: Runner, cache: Cache, root: Path,
                        work: Path) -> None:
    """Bootstrap into ``root``, seeding apt from the package cache and
    storing what it downloaded there."""
    extra: list[str] = []
    outbox = work / "debs"
    if plan.bootstrap_tool == "mmdebstrap":
        outbox.mkdir(exist_ok=True)
        extra = cache.mmdebstrap_args(plan.arch, outbox)
    bootstrap(plan, runner, root, extra)
    if extra:
        added = cache.publish_debs(outbox)
        log.info("package cache: %d new packages stored in %s", added, cache.debs)
    remove_handler(plan, root)


@contextlib.contextmanager
def _flock(path: Path, shared: bool, holder: str) -> Iterator[None]:
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for %s", holder)
            fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing releases the lock
