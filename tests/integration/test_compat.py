"""vmdebootstrap 1.x scripts and hooks, run unchanged, build real images."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.integration.conftest import dpkg_status, elf_machine, vmdebootstrap
from vmdebootstrap.host.passwords import verify_password

LIB_1X = "/usr/share/vmdebootstrap/common/customise.lib"
IMAGE_MIRROR = "http://apt.example.org/debian"
PASSWORD = "1x-Stdin-pa55"  # distinctive, so a leak would be found

# Written the way 1.x's common/jessie-amd64-hook.sh is: its library path and
# helper names, and a plain apt-get in the chroot with no apt set-up of its own.
HOOK_1X = f"""#!/bin/sh
set -e
rootdir=$1
. {LIB_1X}
trap cleanup 0
mount_support
disable_daemons
chroot ${{rootdir}} apt-get -q -y install less
remove_daemon_block
blacklist_qemu_bochs
echo "Customisation complete"
"""


def member(tar: tarfile.TarFile, name: str) -> bytes:
    f = tar.extractfile(name)
    assert f is not None, name
    return f.read()


@pytest.mark.quick  # the one real build of `pytest -m quick`
def test_a_1x_hook_installs_with_plain_apt_get(tmp_path: Path, mirror: str) -> None:
    hook = tmp_path / "jessie-style-hook.sh"
    hook.write_text(HOOK_1X)
    hook.chmod(0o755)
    out = tmp_path / "root.tar.gz"
    run = vmdebootstrap(
        "--no-default-configs", "--tarball", str(out), "--distribution", "bookworm",
        "--debootstrapopts", "variant=minbase", "--no-kernel", "--configure-apt",
        "--apt-mirror", IMAGE_MIRROR, "--customize", str(hook), "--sudo",
        "--user", "tester/-", "--log", str(tmp_path / "build.log"), stdin=PASSWORD + "\n")
    assert run.returncode == 0, run.stderr
    assert "Customisation complete" in (tmp_path / "build.log").read_text()
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        status = dpkg_status(member(tar, "./var/lib/dpkg/status").decode())
        assert status["less"] == "install ok installed"
        sources = {n: member(tar, n).decode() for n in names
                   if n.startswith("./etc/apt/sources.list") and tar.getmember(n).isfile()}
        assert IMAGE_MIRROR in sources["./etc/apt/sources.list"]
        assert not [n for n, text in sources.items() if mirror.rstrip("/") in text]
        assert not [n for n in names if n.startswith("./var/lib/apt/lists/")
                    and n.endswith("_Packages")]
        assert member(tar, "./etc/modprobe.d/qemu-blacklist.conf") == b"blacklist bochs-drm\n"
        # Nothing of the build host: its resolv.conf is not there, and the
        # files we write have Debian's modes.
        host_resolv = Path("/etc/resolv.conf").read_bytes()
        if "./etc/resolv.conf" in names and tar.getmember("./etc/resolv.conf").isfile():
            assert member(tar, "./etc/resolv.conf") != host_resolv
        for name in ("./etc/hostname", "./etc/hosts", "./etc/apt/sources.list"):
            assert stat.S_IMODE(tar.getmember(name).mode) == 0o644, name
        shadow = {line.split(":")[0]: line.split(":")[1]
                  for line in member(tar, "./etc/shadow").decode().splitlines()}
        assert verify_password(PASSWORD, shadow["tester"])
        assert not [n for n in names if "vmdebootstrap-image-sources" in n]
    for text in (run.stdout, run.stderr, (tmp_path / "build.log").read_text()):
        assert PASSWORD not in text


def test_an_armhf_board_image_without_a_bootloader_option(tmp_path: Path) -> None:
    """As 1.x's board examples: no bootloader option, the hook adds u-boot."""
    image = tmp_path / "board.img"
    run = vmdebootstrap(
        "--no-default-configs", "--image", str(image), "--size", "1G", "--arch", "armhf",
        "--foreign", "/usr/bin/qemu-arm-static", "--distribution", "bookworm",
        "--debootstrapopts", "variant=minbase", "--no-kernel")
    assert run.returncode == 0, run.stderr
    notes = [line for line in run.stderr.splitlines() if "no bootloader is installed" in line]
    assert len(notes) == 1, run.stderr  # said once
    assert "--no-kernel" in run.stderr
    table = json.loads(subprocess.run(["sfdisk", "--json", str(image)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    assert table["label"] == "dos" and len(table["partitions"]) == 1
    assert image.stat().st_size == 10**9
    # No bootloader wrote boot code: the MBR's code area is empty.
    with image.open("rb") as fh:
        assert hashlib.sha256(fh.read(440)).digest() == hashlib.sha256(bytes(440)).digest()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "board.img", "board.img.manifest.json", "board.img.sha256", "board.img.spdx.json"]
    # The root (read without mounting it) holds armhf programs.
    start = table["partitions"][0]["start"] * 512
    true = subprocess.run(["debugfs", "-R", "cat /usr/bin/true", f"{image}?offset={start}"],
                          capture_output=True, check=True).stdout
    assert elf_machine(true[:64]) == 40  # EM_ARM
