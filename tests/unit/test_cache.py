"""The root and package caches: key, hit/miss decision, lock."""

from __future__ import annotations

import dataclasses
import fcntl
import multiprocessing
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import RecordingRunner
from vmdebootstrap.plan import Plan
from vmdebootstrap.root import cache as cache_module
from vmdebootstrap.root.cache import Cache, CacheKey, MirrorRelease, explain_miss, make_key

PlanOf = Callable[..., Plan]


def key_of(plan_of: PlanOf, *argv: str, release: bytes = b"Release 1") -> CacheKey:
    plan = plan_of("--tarball", "out.tar", "--dry-run", *argv)
    return make_key(plan, release, "mmdebstrap 1.3.5")


def test_key_is_stable_and_sensitive(plan_of: PlanOf) -> None:
    base = key_of(plan_of)
    assert base.digest == key_of(plan_of).digest
    changes = {
        "release": key_of(plan_of, release=b"Release 2"),
        "packages": key_of(plan_of, "--package", "less"),
        "arch": key_of(plan_of, "--arch", "arm64"),
        "variant": key_of(plan_of, "--debootstrapopts", "variant=minbase"),
        "components": key_of(plan_of, "--debootstrapopts", "components=main,contrib"),
        "mirror": key_of(plan_of, "--mirror", "http://other.example/debian"),
        "distribution": key_of(plan_of, "--distribution", "bookworm"),
    }
    for what, key in changes.items():
        assert key.digest != base.digest, what
        assert what in key.as_dict()


def test_key_ignores_what_comes_after_the_bootstrap(plan_of: PlanOf, tmp_path: Path) -> None:
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o755)
    base = key_of(plan_of)
    for extra in (["--hostname", "other"], ["--user", "u/pw"], ["--customize", str(hook)],
                  ["--configure-apt"]):
        assert key_of(plan_of, *extra).digest == base.digest, extra


def test_key_follows_packages_that_options_add(plan_of: PlanOf) -> None:
    """--enable-dhcp with ifupdown adds packages to the bootstrap: a new tree."""
    base = key_of(plan_of)
    dhcp = key_of(plan_of, "--enable-dhcp", "--no-systemd-networkd")
    assert dhcp.digest != base.digest
    assert "ifupdown" in dhcp.as_dict()["packages"]
    assert "ifupdown" not in base.as_dict()["packages"]


def test_package_order_does_not_matter(plan_of: PlanOf) -> None:
    a = key_of(plan_of, "--package", "less", "--package", "nano")
    b = key_of(plan_of, "--package", "nano", "--package", "less")
    assert a.digest == b.digest


def test_custom_package_content_is_in_the_key(plan_of: PlanOf, tmp_path: Path) -> None:
    deb = tmp_path / "x.deb"
    deb.write_bytes(b"one")
    first = key_of(plan_of, "--custom-package", str(deb))
    deb.write_bytes(b"two")
    assert key_of(plan_of, "--custom-package", str(deb)).digest != first.digest


def test_miss_explains_what_changed() -> None:
    key = CacheKey((("distribution", "bookworm"), ("arch", "amd64"), ("release", "new"),
                    ("packages", "a,b")))
    assert "no cached root for bookworm amd64" in explain_miss(key, [])
    older = {"distribution": "bookworm", "arch": "amd64", "release": "old", "packages": "a,b"}
    assert explain_miss(key, [older]) == "the mirror's Release file changed"
    other = {"distribution": "bookworm", "arch": "amd64", "release": "new", "packages": "a"}
    assert explain_miss(key, [other]) == "the package list differs"


def _entry_tree(cache: Cache, runner: RecordingRunner, key: CacheKey) -> Path:
    """Stage a small tree and publish it as ``key``'s entry."""
    with cache.staging(runner) as staged:
        (staged / "etc").mkdir(parents=True)
        (staged / "etc/hostname").write_text("cached\n")
        with cache.entry_lock(key.digest, shared=False):
            return cache.publish(key, staged, replace=False)


def test_lookup_hit_and_miss(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cache.prepare()
    key = CacheKey((("distribution", "bookworm"), ("arch", "amd64")))
    entry, why = cache.lookup(key)
    assert entry is None and "no cached root" in why
    tree = _entry_tree(cache, RecordingRunner(), key)
    assert tree == cache.roots / key.digest and (tree / "etc/hostname").is_file()
    entry, why = cache.lookup(key)
    assert entry == tree and why == "hit"
    assert not [p for p in cache.roots.iterdir() if p.name.startswith(".")], "temp files left"


def test_publish_keeps_the_entry_another_build_stored_unless_refreshing(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cache.prepare()
    key = CacheKey((("n", "1"),))
    runner = RecordingRunner()
    first = _entry_tree(cache, runner, key)
    (first / "first").write_text("")
    second = _entry_tree(cache, runner, key)
    assert second == first and (first / "first").exists()
    with cache.staging(runner) as staged:
        staged.mkdir()
        (staged / "fresh").write_text("")
        with cache.entry_lock(key.digest, shared=False):
            cache.publish(key, staged, replace=True)
    assert sorted(p.name for p in first.iterdir()) == ["fresh"]
    assert not [p for p in cache.roots.iterdir() if p.name.startswith(".")]


def test_evict_keeps_the_most_recent_and_those_in_use(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cache.prepare()
    runner = RecordingRunner()
    keys = [CacheKey((("n", str(i)),)) for i in range(7)]
    for i, key in enumerate(keys):
        _entry_tree(cache, runner, key)
        os.utime(cache.roots / f"{key.digest}.json", (1000 + i, 1000 + i))
    (cache.roots / "0123.tar.zst").write_bytes(b"an entry of format 2")
    for key in (keys[1], keys[6]):  # --layered's base squashfs of a root
        (cache.roots / f"{key.digest}.zstd.now.squashfs").write_bytes(b"hsqs")
    ready, done = multiprocessing.get_context("fork").Event(), \
        multiprocessing.get_context("fork").Event()
    proc = multiprocessing.get_context("fork").Process(
        target=_use_entry, args=(str(cache.path), keys[0].digest, ready, done))
    proc.start()
    try:
        assert ready.wait(10)
        cache.evict(keep=4)
    finally:
        done.set()
        proc.join(5)
    kept = {p.stem for p in cache.roots.glob("*.json")}
    assert kept == {k.digest for k in (keys[0], *keys[3:])}
    assert sorted(p.name for p in cache.roots.iterdir() if p.is_dir()) == sorted(kept)
    assert not list(cache.roots.glob("*.tar.zst"))
    assert [p.name for p in cache.roots.glob("*.squashfs")] == [
        f"{keys[6].digest}.zstd.now.squashfs"]


def _use_entry(path: str, digest: str, ready: Any, done: Any) -> None:
    """A build using a cached root: holds its lock shared."""
    with Cache(Path(path)).entry_lock(digest, shared=True):
        ready.set()
        done.wait(10)


def test_a_miss_bootstraps_into_the_cache_and_a_hit_bootstraps_nothing(
        plan_of: PlanOf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    booted: list[Path] = []

    def bootstrap(plan: Plan, runner: object, root: Path, extra: object = ()) -> None:
        booted.append(root)
        (root / "etc").mkdir(parents=True)

    monkeypatch.setattr(cache_module, "bootstrap", bootstrap)
    plan = dataclasses.replace(plan_of("--tarball", "out.tar", "--dry-run"),
                               cache_dir=tmp_path / "cache")
    release = MirrorRelease("http://mirror.example/debian", "trixie", lambda m, s: b"R")
    runner = RecordingRunner({"mmdebstrap": "mmdebstrap 1.3.5\n"})
    work = tmp_path / "build-work"
    work.mkdir()
    cache = Cache(tmp_path / "cache")
    for _ in range(2):
        with cache_module.cached_root(plan, runner, work, release) as tree:
            assert tree is not None and (tree / "etc").is_dir()
            assert tree.parent == cache.roots
            # In use: nobody may take the entry's lock alone.
            fd = os.open(cache.roots / f"{tree.name}.lock", os.O_RDWR)
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.close(fd)
    assert len(booted) == 1 and booted[0].parent.parent == cache.roots
    assert not [p for p in cache.roots.iterdir() if p.name.startswith(".")]


def test_a_failed_bootstrap_leaves_nothing_in_the_cache(
        plan_of: PlanOf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def bootstrap(plan: Plan, runner: object, root: Path, extra: object = ()) -> None:
        (root / "half").mkdir(parents=True)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_module, "bootstrap", bootstrap)
    plan = dataclasses.replace(plan_of("--tarball", "out.tar", "--dry-run"),
                               cache_dir=tmp_path / "cache")
    release = MirrorRelease("http://mirror.example/debian", "trixie", lambda m, s: b"R")
    work = tmp_path / "build-work"
    work.mkdir()
    with pytest.raises(OSError), \
            cache_module.cached_root(plan, RecordingRunner(), work, release):
        pass
    roots = tmp_path / "cache/roots"
    assert [p.name for p in roots.iterdir() if not p.name.endswith(".lock")] == []


def _hold_lock(path: str, seconds: float) -> None:
    cache = Cache(Path(path))
    with cache.locked():
        time.sleep(seconds)


def _wait_until_held(cache: Cache) -> None:
    """Until another process holds the cache's lock (shared or not)."""
    fd = os.open(cache.path / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                time.sleep(0.02)
            except BlockingIOError:
                return
    finally:
        os.close(fd)


def test_lock_serialises_writers(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cache.prepare()
    proc = multiprocessing.get_context("fork").Process(
        target=_hold_lock, args=(str(cache.path), 1.0))
    proc.start()
    try:
        _wait_until_held(cache)
        started = time.monotonic()
        with cache.locked():
            waited = time.monotonic() - started
        assert waited > 0.3, "the second writer did not wait for the first"
    finally:
        proc.join(5)


def test_one_release_fetch_serves_the_epoch_and_the_key() -> None:
    fetched: list[tuple[str, str]] = []

    def fetch(mirror: str, suite: str) -> bytes:
        fetched.append((mirror, suite))
        return b"Date: Sat, 10 Jun 2023 09:46:28 UTC\n"

    release = MirrorRelease("http://mirror.example/debian", "bookworm", fetch)
    assert release.data() is release.data()
    assert fetched == [("http://mirror.example/debian", "bookworm")]


def test_publish_debs_adds_only_new_files_atomically(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cache.prepare()
    outbox = tmp_path / "out"
    outbox.mkdir()
    (outbox / "a_1_amd64.deb").write_bytes(b"a")
    (outbox / "b_1_all.deb").write_bytes(b"b")
    (outbox / "lock").write_bytes(b"")
    assert cache.publish_debs(outbox) == 2
    assert cache.publish_debs(outbox) == 0
    assert sorted(p.name for p in cache.debs.iterdir()) == ["a_1_amd64.deb", "b_1_all.deb"]


def test_mmdebstrap_hooks_seed_only_matching_architectures(tmp_path: Path) -> None:
    args = Cache(tmp_path / "c").mmdebstrap_args("arm64", tmp_path / "out")
    assert "--skip=essential/unlink" in args
    seed = next(a for a in args if a.startswith("--setup-hook="))
    assert "*_arm64.deb" in seed and "*_all.deb" in seed and "amd64" not in seed
    assert any(a.startswith("--customize-hook=sync-out /var/cache/apt/archives") for a in args)


@pytest.mark.parametrize("bad", ["relative/dir"])
def test_cache_dir_must_be_absolute(problems_of: Callable[..., list[str]], bad: str) -> None:
    assert any("--cache-dir" in p for p in problems_of("--tarball", "x.tar", "--cache-dir", bad))
