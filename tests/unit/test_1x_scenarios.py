"""vmdebootstrap 1.x's own fast option scenarios (yarns/200-fast-tests.yarn),
encoded as ours: each gives the exit status 1.x specified and, for a dry
run, the same packages in the plan.  Messages are ours, so each scenario
checks our words for the same complaint.  Where we deliberately differ (the
README's "Differences from 1.x"), the scenario says so and checks our way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.conftest import CliResult

QEMU_ARM = """\
enabled
interpreter /usr/libexec/qemu-binfmt/arm-binfmt-P
flags: PF
offset 0
magic 7f454c4601010100000000000000000002002800
mask ffffffffffffff00fffffffffffffffffeffffff
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    argv: tuple[str, ...]
    ok: bool  # 1.x: exited with a zero exit code
    errors: tuple[str, ...] = ()  # our words in the error output
    packages: tuple[str, ...] = ()  # named in the dry-run plan's package lines
    not_packages: tuple[str, ...] = ()
    difference: str | None = None  # a deliberate difference from 1.x (README)


SCENARIOS = [
    Scenario("--squash and --image used together", ("--squash=FOO", "--image=BAR",
             "--dry-run"), False, ("--squash", "--image")),
    Scenario("--squash and --arch arm64 used together", ("--squash=FOO", "--arch=arm64",
             "--dry-run"), True),
    Scenario("--use-uefi and --arch arm64 used together", ("--image=FOO", "--grub",
             "--use-uefi", "--arch=arm64", "--dry-run"), True),
    Scenario("--arch arm64 used with --image but without --use-uefi", ("--image=FOO",
             "--foreign=PATH", "--arch=arm64", "--dry-run"), False, ("--use-uefi", "arm64")),
    Scenario("--use-uefi and --arch arm64 used without grub", ("--image=FOO", "--use-uefi",
             "--arch=arm64", "--dry-run"), True,
             difference="grub is the default bootloader, so --use-uefi needs no --grub"),
    Scenario("--use-uefi and --arch arm64 used without image", ("--grub", "--use-uefi",
             "--arch=arm64", "--dry-run"), False, ("no output given", "--image", "--squash")),
    Scenario("--size too small for a bootstrap", ("--image=FOO", "--size=100M", "--dry-run"),
             False, ("--size", "too small")),
    Scenario("Debian distribution stable name check", ("--image=FOO", "--distribution=stable",
             "--dry-run"), True),
    Scenario("Debian distribution jessie name check", ("--image=FOO", "--distribution=jessie",
             "--dry-run"), True),
    Scenario("allow use of arch and foreign options", ("--image=FOO", "--arch=armhf",
             "--foreign=PATH", "--dry-run"), True),
    Scenario("disallow use of uefi on unsupported architectures", ("--image=FOO", "--grub",
             "--use-uefi", "--arch=armel", "--dry-run"), False, ("armel", "UEFI")),
    Scenario("disallow use of bootpartition if ESP already set", ("--image=FOO",
             "--bootoffset=1024", "--grub", "--use-uefi", "--dry-run"), False,
             ("--bootoffset", "--use-uefi")),
    Scenario("disallow UEFI support on wheezy except on amd64", ("--image=FOO", "--grub",
             "--use-uefi", "--roottype=ext2", "--distribution=wheezy", "--arch=arm64",
             "--dry-run"), False, ("wheezy supports UEFI only on amd64",)),
    Scenario("disallow apt-mirror without configure-apt", ("--image=FOO",
             "--apt-mirror=mirror"), False, ("--apt-mirror requires --configure-apt",)),
    Scenario("default includes the kernel package", ("--image=FOO", "--arch=amd64",
             "--dry-run"), True, packages=("linux-image-amd64",)),
    Scenario("no-linux omits the kernel package", ("--no-kernel", "--image=FOO",
             "--arch=amd64", "--dry-run"), True, not_packages=("linux-image-amd64",)),
    Scenario("kernel-package includes the kernel package", ("--kernel-package", "unlikely",
             "--image=FOO", "--arch=amd64", "--dry-run"), True, packages=("unlikely",),
             not_packages=("linux-image-amd64",)),
    Scenario("no-kernel overrides kernel-package", ("--no-kernel", "--kernel-package",
             "unlikely", "--image=FOO", "--arch=amd64", "--dry-run"), True,
             not_packages=("linux-image-amd64", "unlikely"),
             difference="a note says that --no-kernel wins over --kernel-package"),
    Scenario("package includes the specified package", ("--package", "unlikely",
             "--image=FOO", "--arch=amd64", "--dry-run"), True,
             packages=("linux-image-amd64", "unlikely")),
    Scenario("only images can be converted to qcow2", ("--convert-qcow2", "--tarball",
             "--arch=amd64", "--dry-run"), False, ("--tarball",)),
    Scenario("tarball is not usable with image", ("--image=FOO", "--tarball=FOO",
             "--arch=amd64", "--dry-run"), False, ("only one output per run",)),
    Scenario("tarball is not usable with squash", ("--squash=FOO", "--tarball=FOO",
             "--arch=amd64", "--dry-run"), False, ("only one output per run",)),
    Scenario("masking systemd-networkd without updating initramfs", ("--image=FOO",
             "--no-systemd-networkd", "--no-update-initramfs", "--dry-run"), False,
             ("requires updating the initramfs",)),
    Scenario("btrfs not yet supported with extlinux", ("--image=FOO", "--roottype", "btrfs",
             "--extlinux", "--dry-run"), False, ("btrfs cannot be used with --extlinux",)),
    Scenario("btrfs not yet supported without disabling extlinux", ("--image=FOO",
             "--roottype", "btrfs", "--dry-run"), True,
             difference="grub, the default bootloader, boots a btrfs root"),
    Scenario("bootflag requires argument", ("--bootflag",), False,
             ("--bootflag: give it a value",)),
    Scenario("wheezy image does not support ext4", ("--image=FOO", "--roottype", "ext4",
             "--dry-run", "--distribution", "wheezy"), False,
             ("wheezy images using ext4 will not boot",)),
]


@pytest.fixture
def one_x_host(binfmt_dir: Path, host: object) -> None:
    """1.x's scenarios pass --foreign=PATH for armhf: a handler by that name in
    the working directory, and qemu-arm registered as on a Debian host."""
    (binfmt_dir / "qemu-arm").write_text(QEMU_ARM)
    handler = Path("PATH")
    handler.write_text("#!/bin/sh\n")
    handler.chmod(0o755)


def package_lines(out: str) -> str:
    return "\n".join(line for line in out.splitlines()
                     if line.startswith(("packages:", "kernel package:")))


@pytest.mark.parametrize("case", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_1x_fast_scenario(case: Scenario, one_x_host: None,
                          run_cli: Callable[..., CliResult]) -> None:
    result = run_cli(*case.argv)
    assert (result.code == 0) == case.ok, result.err
    if not case.ok:
        assert result.code == 2, result.err  # bad options, before anything is written
    for fragment in case.errors:
        assert fragment.lower() in result.err.lower(), (fragment, result.err)
    assert "Traceback" not in result.err
    packages = package_lines(result.out)
    for name in case.packages:
        assert name in packages, packages
    for name in case.not_packages:
        assert name not in packages, packages


def test_every_difference_is_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Differences from 1.x", 1)[1].split("\n## ", 1)[0]
    section = " ".join(section.split())  # as the words read, whatever the line breaks
    for case in SCENARIOS:
        if case.difference:
            assert case.difference in section, case.difference
