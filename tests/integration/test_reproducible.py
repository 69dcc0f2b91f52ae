"""Reproducible builds anyone can check.

The same live ISO is built twice under different environments (reprotest's
variations: TMPDIR, HOME, umask, time zone, locale, number of CPUs, host
name, wall-clock time, a cold and a warm cache) with one SOURCE_DATE_EPOCH: the
first build takes it from the mirror's Release date (--reproducible), the
second is given it.  The bytes must be the same, and `vmdebootstrap
verify` must say so, and must notice a hook that changed by one byte.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from tests.integration.conftest import EXAMPLES, Run, vmdebootstrap
from vmdebootstrap.host.digest import file_sha256 as sha256

EPOCH_LINE = re.compile(r"SOURCE_DATE_EPOCH=(\d+) \(the mirror's Release date\)")
ENV_A = {"TZ": "UTC", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
ENV_B = {"TZ": "Asia/Tokyo", "LANG": "de_DE.UTF-8", "LC_ALL": "de_DE.UTF-8"}


def shell(hostname: str, umask: str, cpus: str) -> tuple[str, ...]:
    """Run the build in a UTS namespace of its own with another host name,
    under another umask and on the given CPUs only."""
    return ("unshare", "--uts", "sh", "-c",
            f'hostname {hostname} && umask {umask} && exec taskset -c {cpus} "$@"', "sh")


def build(out: Path, hook: Path, cache: Path, *, first: bool, epoch: int | None = None,
          tmpdir: Path | None = None) -> tuple[Run, int]:
    out.mkdir()
    env = dict(ENV_A if first else ENV_B)
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(epoch)
    if tmpdir is not None:
        tmpdir.mkdir(parents=True)
        env["TMPDIR"] = str(tmpdir)
        (tmpdir / "home").mkdir()
        env["HOME"] = str(tmpdir / "home")
    run = vmdebootstrap(
        "--no-default-configs", "--config", str(EXAMPLES / "live-console-amd64.conf"),
        "--customize", str(hook), "--cache-dir", str(cache),
        *(("--reproducible",) if epoch is None else ()),
        "--log", str(out / "build.log"),
        "--iso", str(out / "live.iso"), "--squash", str(out / "live"),
        env=env, unset=("SOURCE_DATE_EPOCH",),
        prefix=shell("builder-a", "022", "0-1") if first else shell("other-host", "077", "0"),
    )
    assert run.returncode == 0, run.stderr
    if epoch is None:
        found = EPOCH_LINE.findall((out / "build.log").read_text())
        assert len(found) == 1, "--reproducible did not take the Release date"
        epoch = int(found[0])
    return run, epoch


def digests(out: Path) -> dict[str, str]:
    files = {"live.iso": sha256(out / "live.iso")}
    files.update({f"live/{p.name}": sha256(p) for p in sorted((out / "live").iterdir())})
    return files


def release_of(out: Path) -> str:
    return str(json.loads((out / "live.iso.manifest.json").read_text())["mirror"]
               ["release_sha256"])


def test_builds_in_different_environments_are_identical_and_verify_says_so(
        tmp_path: Path) -> None:
    hooks, cache = tmp_path / "hooks", tmp_path / "cache"
    hooks.mkdir()
    hook = hooks / "live-console.sh"
    shutil.copy2(EXAMPLES / "live-console.sh", hook)

    _, epoch = build(tmp_path / "a", hook, cache, first=True)  # cold cache
    build(tmp_path / "b", hook, cache, first=False, epoch=epoch,  # warm cache
          tmpdir=tmp_path / "other tmp" / "deeper")
    a, b = tmp_path / "a", tmp_path / "b"
    if release_of(a) != release_of(b):
        # The mirror published a new Release between the builds: the inputs
        # changed, so build again in the first environment and compare that.
        shutil.rmtree(a)
        _, epoch = build(a, hook, cache, first=True)
    assert release_of(a) == release_of(b), "the mirror moved twice during the test"
    assert digests(a) == digests(b)
    manifest = json.loads((a / "live" / "vmdebootstrap.manifest.json").read_text())
    assert manifest["source_date_epoch"] == epoch
    assert manifest["files"]["filesystem.squashfs"] == sha256(a / "live/filesystem.squashfs")

    same = vmdebootstrap("verify", str(a / "live.iso"), "--cache-dir", str(cache))
    assert same.returncode == 0, same.stdout + same.stderr
    assert f"identical: {a / 'live.iso'} is what its manifest builds" in same.stdout

    # One byte of the hook changed (a comment letter): verify rebuilds with
    # it, as the only file of that name it can find, and reports it.
    text = hook.read_bytes()
    at = text.index(b"#", 2) + 1
    hook.write_bytes(text[:at] + (b"X" if text[at:at + 1] != b"X" else b"Y") + text[at + 1:])
    other = vmdebootstrap("verify", str(a / "live.iso"), "--cache-dir", str(cache),
                          cwd=tmp_path)  # where diffoscope's report goes, if installed
    assert other.returncode == 1, other.stdout + other.stderr
    assert "differs:" in other.stdout
    assert f"--customize: {hook} is not the file the output was built with" in other.stdout
    assert "live/vmdebootstrap.manifest.json: differs" in other.stdout
    if shutil.which("diffoscope"):  # tools/setup-host installs it
        report = tmp_path / "live.iso.diffoscope.txt"
        assert "diffoscope's report: live.iso.diffoscope.txt" in other.stdout
        assert "vmdebootstrap.manifest.json" in report.read_text()
