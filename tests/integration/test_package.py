"""The Debian package: built with dpkg-buildpackage from a copy of this
working tree (committed or not), checked by lintian, its man pages
rendered, then installed with apt into fresh bookworm and trixie roots made
by mmdebstrap from the host's mirror, where its commands must run."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vmdebootstrap.docs import verify_parser
from vmdebootstrap.host.resources import remove_tree
from vmdebootstrap.intent.options import META_OPTIONS, OPTIONS, Kind

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# The system's tools only: no virtualenv or pyenv python in the build.
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
LIB = "/usr/share/vmdebootstrap/common/customise.lib"
# Recommends found on every architecture (the grub-*-bin ones are per architecture).
RECOMMENDS = ("grub-common", "isolinux", "syslinux-common", "qemu-utils")
INSTALL_SECONDS = 180  # bootstrap and install, per suite (about 2 min each)


def flags() -> list[str]:
    """Every option of vmdebootstrap and vmdebootstrap verify, under all their names."""
    names = [f"--{n}" for n in META_OPTIONS]
    names += [f for a in verify_parser()._actions for f in a.option_strings]
    for opt in OPTIONS:
        names.append(f"--{opt.name}")
        if opt.kind is Kind.BOOL and opt.negatable and not opt.name.startswith("no-"):
            names.append(f"--no-{opt.name}")
        if opt.opposite:
            names.append(f"--{opt.opposite}")
    return names


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t, path=ENV["PATH"]) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (run tools/setup-host)")


def copy_working_tree(dest: Path) -> None:
    """The files git tracks, and new ones it does not ignore, as they are
    on disk now: uncommitted work is built too."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source, target = ROOT / name, dest / name
        if not source.is_symlink() and not source.exists():
            continue  # deleted in the working tree
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)


def run(argv: list[str], timeout: int, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; on a timeout or Ctrl-C it gets SIGTERM and time to undo
    its mounts (mmdebstrap does), and only then SIGKILL."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, cwd=cwd, env=env or ENV)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        proc.terminate()
        try:
            proc.communicate(timeout=120)
        finally:
            proc.kill()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


@dataclass
class Built:
    deb: Path
    changes: Path
    seconds: float


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    need("dpkg-buildpackage", "dh", "lintian", "man", "mmdebstrap")
    base = tmp_path_factory.mktemp("package")
    try:
        tree = base / f"vmdebootstrap-{VERSION}"
        copy_working_tree(tree)
        started = time.monotonic()
        built = run(["dpkg-buildpackage", "-us", "-uc", "-b"], timeout=900, cwd=tree,
                    env={**ENV, "HOME": str(base)})
        took = time.monotonic() - started
        print(f"dpkg-buildpackage: exit {built.returncode} in {took:.1f} s")
        assert built.returncode == 0, (built.stdout + built.stderr)[-4000:]
        changes = next(base.glob(f"vmdebootstrap_{VERSION}_*.changes"))
        yield Built(base / f"vmdebootstrap_{VERSION}_all.deb", changes, took)
    finally:
        remove_tree(base)


def test_the_package_holds_the_commands_docs_and_helpers(package: Built) -> None:
    fields = run(["dpkg-deb", "--field", str(package.deb), "Version", "Architecture"], 60)
    assert fields.returncode == 0, fields.stderr
    assert fields.stdout.split() == ["Version:", VERSION, "Architecture:", "all"]
    listing = run(["dpkg-deb", "--contents", str(package.deb)], 60).stdout
    for path in ("/usr/bin/vmdebootstrap", "/usr/bin/vmdebootstrap-boottest",
                 "/usr/share/man/man1/vmdebootstrap.1.gz",
                 "/usr/share/man/man1/vmdebootstrap-boottest.1.gz",
                 "/usr/share/bash-completion/completions/vmdebootstrap",
                 "/usr/share/bash-completion/completions/vmdebootstrap-boottest",
                 f"{LIB} -> ", "/usr/share/vmdebootstrap/examples -> ",
                 "/usr/lib/python3/dist-packages/vmdebootstrap/examples/live-console-amd64.conf"):
        assert f".{path}" in listing, path


def test_lintian_reports_no_errors(package: Built, tmp_path: Path) -> None:
    # lintian 2.116 leaves mldbm-elf-* files in $TMPDIR: keep them in ours.
    result = run(["lintian", "--info", str(package.deb), str(package.changes)], 600,
                 env={**ENV, "HOME": str(package.deb.parent), "TMPDIR": str(tmp_path)})
    print(f"lintian: exit {result.returncode}, {len(result.stdout.splitlines())} tags")
    print(result.stdout)
    errors = [line for line in result.stdout.splitlines() if line.startswith("E:")]
    assert errors == [] and result.returncode in (0, 2), result.stdout + result.stderr


def test_man_pages_render_with_every_option(package: Built, tmp_path: Path) -> None:
    assert run(["dpkg-deb", "--extract", str(package.deb), str(tmp_path)], 60).returncode == 0
    pages = {}
    for page in ("vmdebootstrap", "vmdebootstrap-boottest"):
        path = tmp_path / f"usr/share/man/man1/{page}.1.gz"
        result = run(["man", "--warnings", "-l", str(path)], 60,
                     env={**ENV, "MANWIDTH": "80"})
        assert result.returncode == 0 and result.stderr == "", result.stderr
        pages[page] = result.stdout
    missing = [f for f in flags() if f not in pages["vmdebootstrap"]]
    assert missing == []
    for word in ("EXIT STATUS", "EXAMPLES", "FILES", LIB, "/etc/vmdebootstrap.conf"):
        assert word in pages["vmdebootstrap"]
    for word in ("--firmware", "--user", "--accel", "FILE"):
        assert word in pages["vmdebootstrap-boottest"]


CHECK = """#!/bin/sh
set -eu
mkdir -p /tmp/results
cd /tmp/results
export DEBIAN_FRONTEND=noninteractive
date +%s.%N > install-started
apt-get install -y -q --install-recommends /tmp/{deb}  # as users get it
date +%s.%N > install-ended
dpkg-query -W -f '${{Package}} ${{Status}}\n' {recommends} > recommends 2>&1 || true
vmdebootstrap --version > version
vmdebootstrap --help > help
vmdebootstrap-boottest --help > boottest-help
MANWIDTH=80 man vmdebootstrap | cat > man
readlink -f {lib} > lib
sh -n {lib}
ls /usr/share/vmdebootstrap/examples/ > examples
bash -c '. /usr/share/bash-completion/completions/vmdebootstrap; complete -p vmdebootstrap' \\
    > completion
"""


@pytest.mark.parametrize("suite", ["bookworm", "trixie"])
def test_installs_and_runs_in_a_fresh_root(package: Built, suite: str, mirror: str,
                                           tmp_path: Path) -> None:
    check = tmp_path / "check.sh"
    check.write_text(CHECK.format(deb=package.deb.name, lib=LIB, recommends=" ".join(RECOMMENDS)))
    target, out = tmp_path / "root", tmp_path / "out"
    out.mkdir()
    argv = ["mmdebstrap", "--mode=root", "--variant=apt", "--include=man-db",
            f"--customize-hook=copy-in {shlex.quote(str(package.deb))} "
            f"{shlex.quote(str(check))} /tmp",
            '--customize-hook=chroot "$1" sh /tmp/check.sh',
            f"--customize-hook=copy-out /tmp/results {shlex.quote(str(out))}",
            suite, str(target), mirror]
    started = time.monotonic()
    try:
        result = run(argv, timeout=INSTALL_SECONDS * 3)
    finally:
        remove_tree(target)  # refuses if anything is still mounted in it
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-4000:]
    results = out / "results"
    installed = float((results / "install-ended").read_text()) - \
        float((results / "install-started").read_text())
    print(f"{suite}: root and install in {took:.0f} s, of which apt-get install "
          f"{installed:.0f} s")
    assert (results / "version").read_text().strip() == f"vmdebootstrap {VERSION}"
    assert "--roottype" in (results / "help").read_text()
    assert "--firmware" in (results / "boottest-help").read_text()
    man = (results / "man").read_text()
    assert "VMDEBOOTSTRAP(1)" in man and "--no-default-configs" in man and "VERIFY" in man
    assert (results / "lib").read_text().strip().endswith("/root/helpers/customise.sh")
    assert "live-console-amd64.conf" in (results / "examples").read_text()
    assert "_vmdebootstrap" in (results / "completion").read_text()
    recommended = (results / "recommends").read_text()
    assert recommended.count("install ok installed") == len(RECOMMENDS), recommended
    assert took < INSTALL_SECONDS, f"{suite}: {took:.0f} s"
