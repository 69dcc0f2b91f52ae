"""The root cache is honest: a build restored from it is the same as a cold one."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

from tests.integration.conftest import vmdebootstrap

MINBASE = ("--no-default-configs", "--distribution", "bookworm", "--debootstrapopts",
           "variant=minbase", "--no-kernel")
# One epoch for both builds: timestamps and salts are then the same, so any
# difference left is one the cache made.
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


def manifest(tarball: Path) -> dict[str, tuple[object, ...]]:
    """Every member: type, owner, group, mode, size, link target, content hash."""
    entries: dict[str, tuple[object, ...]] = {}
    with tarfile.open(tarball) as tar:
        for m in tar:
            digest = ""
            if m.isfile():
                f = tar.extractfile(m)
                assert f is not None
                digest = hashlib.sha256(f.read()).hexdigest()
            entries[m.name] = (m.type, m.uid, m.gid, m.mode, m.size, m.linkname, digest)
    return entries


def build(tmp_path: Path, name: str, cache: Path, *extra: str) -> str:
    log = tmp_path / f"{name}.log"
    run = vmdebootstrap(*MINBASE, "--tarball", str(tmp_path / f"{name}.tar"), "--cache-dir",
                        str(cache), "--log", str(log), *extra, env=EPOCH)
    assert run.returncode == 0, run.stderr
    return log.read_text()


def test_a_restored_root_is_the_cold_one(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cold = build(tmp_path, "cold", cache)
    assert "root cache: miss" in cold and "root cache: stored" in cold
    warm = build(tmp_path, "warm", cache)
    assert "root cache: hit" in warm
    cold_tree, warm_tree = manifest(tmp_path / "cold.tar"), manifest(tmp_path / "warm.tar")
    assert len(cold_tree) > 3000
    differ = sorted(n for n in cold_tree.keys() | warm_tree.keys()
                    if cold_tree.get(n) != warm_tree.get(n))
    assert differ == []

    # What comes after the bootstrap does not decide the cached root ...
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\necho hooked > \"$1/etc/hooked\"\n")
    hook.chmod(0o755)
    hooked = build(tmp_path, "hooked", cache, "--customize", str(hook))
    assert "root cache: hit" in hooked
    # ... what goes into it does, and the log says why it missed.
    more = build(tmp_path, "more", cache, "--package", "less")
    assert "root cache: miss (the package list differs)" in more
