"""Real builds of the core outputs: the live squash directory and tarballs."""

from __future__ import annotations

import gzip
import json
import os
import pty
import pwd
import re
import select
import signal
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.integration.conftest import (
    APT_MIRROR,
    SECRET,
    LiveBuild,
    Run,
    dpkg_status,
    elf_machine,
    unsquash_cat,
    vmdebootstrap,
)
from vmdebootstrap.host.passwords import verify_password


@pytest.fixture(scope="session")
def live_squash(live_build: LiveBuild) -> tuple[Path, Path, Run]:
    return live_build.squash, live_build.log, live_build.run


def test_squash_dir_has_the_live_files(live_squash: tuple[Path, Path, Run]) -> None:
    out, log, _ = live_squash
    names = {p.name for p in out.iterdir()}
    assert {"filesystem.squashfs", "vmlinuz", "initrd.img", "filesystem.packages",
            "SHA256SUMS", "vmdebootstrap.manifest.json", "filesystem.spdx.json"} <= names
    # every file the build wrote is listed, and sha256sum checks them all
    listed = {line.split("  ", 1)[1] for line in (out / "SHA256SUMS").read_text().splitlines()}
    assert listed == names - {"SHA256SUMS"}
    subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=out, check=True,
                   capture_output=True)
    assert any(n.startswith("vmlinuz-") for n in names)
    assert any(n.startswith("initrd.img-") for n in names)
    assert (out / "filesystem.squashfs").stat().st_size > 50 * 2**20
    assert (out / "vmlinuz").read_bytes() == next(out.glob("vmlinuz-*")).read_bytes()
    assert not [n for n in names if n.startswith(".")], "staging leftovers"
    # The initramfs is made once, after every package is set up (a
    # bootstrap used to make it twice), and has live-boot's scripts.
    text = log.read_text()
    if "root cache: hit" not in text:
        assert text.count("update-initramfs: Generating") == 1, text
    initrd = (out / "initrd.img").read_bytes()
    # initramfs-tools falls back to gzip in a root without zstd
    members = gzip.decompress(initrd[initrd.index(b"\x1f\x8b\x08"):])
    assert b"scripts/live\0" in members and b"live/boot/9990-overlay.sh\0" in members
    nobody = pwd.getpwnam("nobody").pw_uid
    assert out.stat().st_uid == nobody
    assert all(p.stat().st_uid == nobody for p in out.iterdir())


def test_packages_include_kernel_live_boot_and_hook_recommends(
        live_squash: tuple[Path, Path, Run]) -> None:
    out, _, _ = live_squash
    listed = {line.split("\t")[0] for line in
              (out / "filesystem.packages").read_text().splitlines()}
    assert {"linux-image-amd64", "live-boot", "sudo", "systemd-sysv", "curl"} <= listed
    status = dpkg_status(unsquash_cat(out / "filesystem.squashfs",
                                      "var/lib/dpkg/status").decode())
    assert status["curl"] == "install ok installed"
    # curl's Recommends: installed only because the hook's apt_install
    # installs Recommends, as the live-image guide asks.
    assert status["ca-certificates"] == "install ok installed"


def test_accounts_and_passwords(live_squash: tuple[Path, Path, Run]) -> None:
    out, log, run = live_squash
    fs = out / "filesystem.squashfs"
    shadow = {line.split(":")[0]: line.split(":") for line in
              unsquash_cat(fs, "etc/shadow").decode().splitlines()}
    assert shadow["root"][1].startswith("!"), "root is not locked"
    assert verify_password("live", shadow["user"][1])
    assert verify_password(SECRET, shadow["tester"][1])
    assert shadow["tester"][1].startswith("$y$")
    group = {line.split(":")[0]: line.split(":")[3] for line in
             unsquash_cat(fs, "etc/group").decode().splitlines()}
    assert set(group["sudo"].split(",")) == {"user", "tester"}
    # The password is never logged, printed, or stored in plain text.
    for text in (log.read_text(), run.stdout, run.stderr):
        assert SECRET not in text
    listing = subprocess.run(["unsquashfs", "-l", str(fs)], capture_output=True,
                             text=True, check=True).stdout
    assert SECRET not in listing
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_system_configuration(live_squash: tuple[Path, Path, Run], mirror: str) -> None:
    out, _, _ = live_squash
    fs = out / "filesystem.squashfs"
    assert unsquash_cat(fs, "etc/hostname").decode() == "debian-live\n"
    assert "127.0.1.1\tdebian-live" in unsquash_cat(fs, "etc/hosts").decode()
    sources = unsquash_cat(fs, "etc/apt/sources.list").decode()
    assert f"deb {APT_MIRROR} bookworm main" in sources
    listing = subprocess.run(["unsquashfs", "-l", "-d", "", str(fs)], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    apt_files = [p for p in listing if p.startswith("/etc/apt/sources.list")]
    for path in apt_files:
        if path.endswith((".list", ".sources")):
            assert mirror.rstrip("/") not in unsquash_cat(fs, path.lstrip("/")).decode()
    assert "/usr/sbin/policy-rc.d" not in listing
    assert not [p for p in listing if "vmdebootstrap-saved" in p]
    assert not [p for p in listing if p.startswith("/var/lib/apt/lists/") and
                p.endswith("_Packages")]
    assert not [p for p in listing if p.startswith("/var/cache/apt/archives/")
                and p.endswith(".deb")]
    assert unsquash_cat(fs, "etc/machine-id") == b""
    assert "/etc/systemd/network/80-vmdebootstrap-dhcp.network" in listing
    assert ("/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"
            in listing)
    assert "Built by vmdebootstrap" in unsquash_cat(fs, "etc/motd").decode()


def test_arm64_tarball_through_binfmt(tmp_path: Path) -> None:
    tarball = tmp_path / "arm64.tar.gz"
    run = vmdebootstrap(
        "--no-default-configs", "--tarball", str(tarball), "--arch", "arm64",
        "--distribution", "bookworm", "--debootstrapopts", "variant=minbase",
        "--no-kernel", "--user", "bob/bob-Pw-123", "--sudo", "--pkglist",
    )
    assert run.returncode == 0, run.stderr
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
        true_bin = tar.extractfile("./usr/bin/true")
        assert true_bin is not None
        assert elf_machine(true_bin.read()) == 183  # EM_AARCH64
        shadow = tar.getmember("./etc/shadow")
        assert (shadow.uid, shadow.gid) == (0, 42)  # numeric owner: root:shadow
        group = tar.extractfile("./etc/group")
        assert group is not None and b"sudo:x:27:bob" in group.read()
    assert not [n for n in names if "qemu" in n], "the qemu handler was left in the image"
    packages = (tmp_path / "arm64.tar.gz.packages").read_text()
    assert "sudo" in {line.split("\t")[0] for line in packages.splitlines()}
    subprocess.run(["sha256sum", "--strict", "-c", "arm64.tar.gz.sha256"], cwd=tmp_path,
                   check=True, capture_output=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "arm64.tar.gz", "arm64.tar.gz.manifest.json", "arm64.tar.gz.packages",
        "arm64.tar.gz.sha256", "arm64.tar.gz.spdx.json"]
    sbom = json.loads((tmp_path / "arm64.tar.gz.spdx.json").read_text())
    arches = {p["name"]: p.get("versionInfo") for p in sbom["packages"]}
    assert "sudo" in arches and "pkg:deb/debian/sudo@" in json.dumps(sbom)
    # Under a pipe, without --verbose: the step lines and the last line only.
    lines = run.stdout.splitlines()
    assert lines[-1].startswith(f"Built {tarball} (") and "\x1b" not in run.stdout
    assert all(STEP_LINE.match(line) for line in lines[:-1]), lines
    assert any(line.startswith("Bootstrapping bookworm arm64 with mmdebstrap: ")
               for line in lines)


# "Configuring the system: 2 s", "Bootstrapping ...: 1 min 20 s"
STEP_LINE = re.compile(r"^[A-Z].*: (\d+ s|\d+ min \d\d s|\d+ h \d\d min)$")


def test_terminal_shows_live_progress(tmp_path: Path) -> None:
    """On a terminal a status line moves: the step, its elapsed time and
    apt's packages out of the total; it is wiped before each step line.
    The build also says --snapshot (this machine's mirror stands in for a
    snapshot mirror): apt's Valid-Until check is off, and the manifest
    in the tarball and beside it records it."""
    tarball = tmp_path / "small.tar"
    log = tmp_path / "build.log"
    code, shown = on_terminal("--no-default-configs", "--no-cache", "--tarball", str(tarball),
                              "--distribution", "bookworm", "--debootstrapopts",
                              "variant=minbase", "--no-kernel", "--snapshot",
                              "--log", str(log))
    assert code == 0, shown
    assert "'--aptopt=Acquire::Check-Valid-Until false'" in log.read_text()
    beside = json.loads((tmp_path / "small.tar.manifest.json").read_text())
    assert beside["mirror"]["snapshot"] is True and beside["settings"]["snapshot"] is True
    with tarfile.open(tarball) as tar:
        member = tar.extractfile("./var/lib/vmdebootstrap/manifest.json")
        assert member is not None
        inside = json.loads(member.read())
    assert inside == {k: v for k, v in beside.items() if k not in ("output_file", "input_paths")}
    assert beside["output_file"]["sha256"] == sha256_of(tarball)
    assert (tmp_path / "small.tar.spdx.json").is_file()
    assert re.search(r"\r\x1b\[KBootstrapping bookworm amd64 with mmdebstrap \[\d+ s\] "
                     r"\d+/\d+ (packages downloaded|unpacked)", shown), shown
    assert re.search(r"\r\x1b\[KBootstrapping bookworm amd64 with mmdebstrap: \d+ s\r?\n",
                     shown), shown
    assert re.search(rf"Built {re.escape(str(tarball))} \(\d+\.\d MiB\) in ", shown)


def on_terminal(*args: str, timeout: float = 900) -> tuple[int, str]:
    """Run vmdebootstrap with a pseudo-terminal as its stdout and stderr;
    its exit status and everything it drew."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "vmdebootstrap", *args],
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 5)[0]:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=max(1, deadline - time.monotonic()))
    except BaseException:
        proc.send_signal(signal.SIGINT)  # let the build unwind, as vmdebootstrap() does
        try:
            proc.wait(timeout=120)
        finally:
            proc.kill()
        raise
    finally:
        os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


def test_failing_hook_fails_the_build_and_leaves_nothing(tmp_path: Path) -> None:
    hook = tmp_path / "fail.sh"
    hook.write_text("#!/bin/sh\n. \"$VMDEBOOTSTRAP_HELPERS\"\nmount_proc\n"
                    "disable_daemons\necho about to fail\nexit 1\n")
    hook.chmod(0o755)
    out = tmp_path / "out.tar"
    run = vmdebootstrap(
        "--no-default-configs", "--tarball", str(out), "--distribution", "bookworm",
        "--debootstrapopts", "variant=minbase", "--no-kernel", "--customize", str(hook),
    )
    assert run.returncode == 1
    assert "hook" in run.stderr and "status 1" in run.stderr
    assert "about to fail" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fail.sh"], "output left behind"
    assert "Traceback" not in run.stderr


def test_bad_input_touches_nothing(tmp_path: Path) -> None:
    run = vmdebootstrap("--no-default-configs", "--squash", str(tmp_path / "x"),
                        "--size", "12Q", "--arch", "vax", "--user", "nopassword")
    assert run.returncode == 2
    assert "--size" in run.stderr and "--arch" in run.stderr and "--user" in run.stderr
    assert "Traceback" not in run.stderr
    assert list(tmp_path.iterdir()) == []
    assert os.listdir(tmp_path) == []


def test_manifest_and_sbom_of_the_live_build(live_build: LiveBuild) -> None:
    """The ISO and its squash directory carry their manifest; the SBOM
    beside the ISO validates with SPDX's own tools and lists every package
    with a version, most with a licence from their copyright files."""
    spdx = pytest.importorskip("spdx_tools.spdx.parser.parse_anything")
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    iso, squash = live_build.iso, live_build.squash
    beside = json.loads((iso.parent / f"{iso.name}.manifest.json").read_text())
    inside = json.loads((squash / "vmdebootstrap.manifest.json").read_text())
    assert beside["output_file"]["sha256"] == sha256_of(iso)
    assert {k: v for k, v in beside.items() if k not in ("output_file", "input_paths")} \
        == inside
    assert inside["files"]["filesystem.squashfs"] == sha256_of(squash / "filesystem.squashfs")
    assert SECRET not in json.dumps(beside), "a password reached the manifest"
    assert inside["passwords"]["users"][1]["name"] == "tester"
    listed = {line.split("\t")[0] for line in
              (squash / "filesystem.packages").read_text().splitlines()}
    assert {p["name"] for p in inside["packages"]} == listed

    document = spdx.parse_file(str(iso.parent / f"{iso.name}.spdx.json"))
    assert validate_full_spdx_document(document) == []
    packages = [p for p in document.packages if p.spdx_id != "SPDXRef-Output"]
    assert {p.name for p in packages} == listed
    assert all(p.version for p in packages)
    licensed = [p for p in packages if str(p.license_declared) != "NOASSERTION"]
    share = len(licensed) / len(packages)
    print(f"SBOM: {len(licensed)} of {len(packages)} packages ({share:.0%}) have a licence")
    assert share >= 0.8
    assert (squash / "filesystem.spdx.json").is_file()


def sha256_of(path: Path) -> str:
    from vmdebootstrap.host.digest import file_sha256

    return file_sha256(path)
