"""make_plan: every rule, on a fake amd64 host (see conftest.py).

Each refusal is a UsageError whose problems name the options involved.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.conftest import MIRROR, SECRET, parse
from vmdebootstrap import plan as plan_module
from vmdebootstrap.errors import UsageError
from vmdebootstrap.intent.options import OPTIONS, Kind
from vmdebootstrap.outputs.kinds import KINDS
from vmdebootstrap.plan import KERNELS, Host, Plan, make_plan

PlanOf = Callable[..., Plan]
ProblemsOf = Callable[..., list[str]]

TARBALL = "root.tar.gz"  # relative: the tests run in tmp_path/work


def exactly_one(problems: list[str], *fragments: str) -> str:
    """The one problem containing every fragment."""
    hits = [p for p in problems if all(f in p for f in fragments)]
    assert len(hits) == 1, f"{fragments} not found once in {problems}"
    return hits[0]


def image(out: Path, *extra: str) -> tuple[str, ...]:
    return ("--image", str(out / "disk.img"), "--size", "3G", *extra)


# --- outputs -----------------------------------------------------------------


def test_no_output_refused(problems_of: ProblemsOf) -> None:
    exactly_one(problems_of(), "no output given", "--image", "--tarball", "--squash", "--iso")


@pytest.mark.parametrize(("first", "second"), [
    ("image", "tarball"), ("image", "squash"), ("image", "iso"),
    ("tarball", "squash"), ("tarball", "iso"),
])
def test_two_outputs_refused(problems_of: ProblemsOf, out: Path, first: str,
                             second: str) -> None:
    names = {"image": "d.img", "tarball": "r.tar", "squash": "sq", "iso": "l.iso"}
    problems = problems_of(f"--{first}", str(out / names[first]),
                           f"--{second}", str(out / names[second]))
    exactly_one(problems, "only one output per run", f"--{first}", f"--{second}")


def test_squash_may_accompany_iso(plan_of: PlanOf, out: Path) -> None:
    plan = plan_of("--iso", str(out / "live.iso"), "--squash", str(out / "live"))
    assert plan.output == "iso"
    assert KINDS[plan.output].bootable
    assert plan.targets.path == out / "live.iso"
    assert plan.targets.squash_dir == out / "live"


# A live output boots from a squashfs (live-boot); a bootable one can be booted
# as it is (--boot-test).  Each boots with a kernel.
@pytest.mark.parametrize(("option", "name", "live", "bootable"), [
    ("--image", "disk.img", False, True), ("--tarball", "root.tar.xz", False, False),
    ("--squash", "live", True, False), ("--iso", "live.iso", True, True),
])
def test_each_output_alone(plan_of: PlanOf, out: Path, option: str, name: str,
                           live: bool, bootable: bool) -> None:
    plan = plan_of(option, str(out / name), "--size", "3G")
    assert plan.output == option.lstrip("-")
    assert KINDS[plan.output].live is live
    assert KINDS[plan.output].bootable is bootable
    assert plan.targets.kind == plan.output and plan.targets.path == out / name
    assert plan.kernel_package == "linux-image-amd64"


def test_missing_output_directory_refused(problems_of: ProblemsOf, tmp_path: Path) -> None:
    problems = problems_of("--tarball", str(tmp_path / "nowhere" / "root.tar"))
    exactly_one(problems, "--tarball", "does not exist")


def test_squash_directory_parents_are_created(plan_of: PlanOf, tmp_path: Path) -> None:
    assert plan_of("--squash", str(tmp_path / "new" / "deeper" / "live")).output == "squash"


def test_unwritable_output_directory_refused(problems_of: ProblemsOf, out: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    real_access = os.access
    # The tests may run as root, for whom every directory is writable.
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == out
                        else real_access(path, mode))
    exactly_one(problems_of("--image", str(out / "d.img"), "--size", "3G"),
                "--image", "not writable")


def test_empty_output_path_refused(problems_of: ProblemsOf) -> None:
    exactly_one(problems_of("--image", " "), "--image: empty path")


def test_image_that_is_a_directory_refused(problems_of: ProblemsOf, out: Path) -> None:
    exactly_one(problems_of("--image", str(out), "--size", "3G"), "--image",
                "not a regular file")


def test_squash_that_is_a_file_refused(problems_of: ProblemsOf, out: Path) -> None:
    (out / "f").write_text("")
    exactly_one(problems_of("--squash", str(out / "f")), "--squash", "not a directory")


@pytest.mark.parametrize("name", ["r.tar", "r.tar.gz", "r.tgz", "r.tar.xz", "r.tar.zst",
                                  "root.zip", "root.tar.gz.part", "root", "root.img"])
def test_tarball_of_any_name_accepted(plan_of: PlanOf, name: str) -> None:
    """1.x wrote --tarball with tar -a: compressed as the suffix says, a
    plain tar under any other name."""
    plan = plan_of("--tarball", name)
    assert plan.output == "tarball" and plan.targets.path.name == name


# --- boot: UEFI, bootloaders, arm64 ------------------------------------------


def test_arm64_image_needs_uefi(problems_of: ProblemsOf, out: Path) -> None:
    exactly_one(problems_of(*image(out, "--arch", "arm64")), "--image", "arm64",
                "--use-uefi")


def test_arm64_uefi_image_on_amd64_host(plan_of: PlanOf, out: Path) -> None:
    plan = plan_of(*image(out, "--arch", "arm64", "--use-uefi"))
    assert plan.arch == "arm64"
    assert plan.foreign is not None
    assert plan.foreign.entry.interpreter == "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"
    assert plan.foreign.entry.fix_binary
    assert plan.kernel_package == "linux-image-arm64"


@pytest.mark.parametrize("bootloader", ["--extlinux", "--no-grub"])
def test_uefi_needs_grub(problems_of: ProblemsOf, out: Path, bootloader: str) -> None:
    problems = problems_of(*image(out, "--use-uefi", bootloader))
    exactly_one(problems, "--use-uefi needs --grub", bootloader)


@pytest.mark.parametrize("arch", ["amd64", "i386", "arm64", "armhf"])
def test_uefi_arches(host: Host, out: Path, arch: str) -> None:
    native = dataclasses.replace(host, arch="arm64" if arch == "armhf" else host.arch)
    plan = make_plan(parse(*image(out, "--arch", arch, "--use-uefi")), native)
    assert plan.settings.use_uefi and plan.arch == arch


def test_uefi_refused_for_armel(host: Host, out: Path) -> None:
    arm64_host = dataclasses.replace(host, arch="arm64")  # armel runs natively there
    with pytest.raises(UsageError) as info:
        make_plan(parse(*image(out, "--arch", "armel", "--use-uefi")), arm64_host)
    exactly_one(info.value.problems, "--use-uefi", "armel", "UEFI")


def test_bootoffset_with_uefi_refused(problems_of: ProblemsOf, out: Path) -> None:
    exactly_one(problems_of(*image(out, "--use-uefi", "--bootoffset", "1MiB")),
                "--bootoffset", "--use-uefi")


def test_bootoffset_without_uefi(plan_of: PlanOf, out: Path) -> None:
    assert plan_of(*image(out, "--bootoffset", "1MiB")).settings.bootoffset == 1024**2


def test_btrfs_root_with_extlinux_refused(problems_of: ProblemsOf, out: Path) -> None:
    exactly_one(problems_of(*image(out, "--roottype", "btrfs", "--extlinux")),
                "--roottype btrfs", "--extlinux")


def test_btrfs_root_with_grub(plan_of: PlanOf, out: Path) -> None:
    assert plan_of(*image(out, "--roottype", "btrfs")).settings.roottype == "btrfs"


def test_small_swap_refused(problems_of: ProblemsOf, out: Path) -> None:
    exactly_one(problems_of(*image(out, "--swap", "100M")), "--swap", "256MiB")


# --- wheezy ------------------------------------------------------------------


def test_wheezy_uefi_only_on_amd64(problems_of: ProblemsOf, out: Path) -> None:
    problems = problems_of(*image(out, "--distribution", "wheezy", "--arch", "i386",
                                  "--use-uefi", "--roottype", "ext3"))
    exactly_one(problems, "--use-uefi", "wheezy", "amd64", "i386")


def test_wheezy_uefi_on_amd64(plan_of: PlanOf, out: Path) -> None:
    plan = plan_of(*image(out, "--distribution", "wheezy", "--use-uefi", "--roottype",
                          "ext3"))
    assert plan.distribution == "wheezy"


def test_wheezy_ext4_image_refused(problems_of: ProblemsOf, out: Path) -> None:
    exactly_one(problems_of(*image(out, "--distribution", "wheezy")),
                "--roottype ext4", "wheezy")


def test_wheezy_ext4_is_fine_for_a_tarball(plan_of: PlanOf) -> None:
    assert plan_of("--tarball", TARBALL, "--distribution", "wheezy").distribution == "wheezy"


# --- sizes and other image options --------------------------------------------


def test_size_too_small_refused(problems_of: ProblemsOf, out: Path) -> None:
    problem = exactly_one(problems_of("--image", str(out / "d.img"), "--size", "100M"),
                          "--size", "too small")
    assert "100000000 bytes" in problem
    assert "MiB" in problem


def test_size_counts_swap_and_boot(problems_of: ProblemsOf, plan_of: PlanOf,
                                   out: Path) -> None:
    assert plan_of("--image", str(out / "d.img"), "--size", "1G").output == "image"
    exactly_one(problems_of("--image", str(out / "d.img"), "--size", "1G",
                            "--swap", "512MiB", "--bootsize", "256MiB"), "--size")


@pytest.mark.parametrize("output", [("--tarball", TARBALL), ("--squash", "live")])
def test_convert_qcow2_only_with_image(problems_of: ProblemsOf,
                                       output: tuple[str, str]) -> None:
    exactly_one(problems_of(*output, "--convert-qcow2"), "--convert-qcow2", "--image")


def test_convert_qcow2_with_image(plan_of: PlanOf, out: Path) -> None:
    assert plan_of(*image(out, "--convert-qcow2")).settings.convert_qcow2


@pytest.mark.parametrize("size", ["12Q", "", "G", "1,5G"])
def test_malformed_size_refused(problems_of: ProblemsOf, size: str) -> None:
    exactly_one(problems_of("--tarball", TARBALL, "--size", size), "--size:", "not a size")


def test_negative_size_refused(problems_of: ProblemsOf) -> None:
    exactly_one(problems_of("--tarball", TARBALL, "--size", "-1"), "--size: '-1' is negative")


@pytest.mark.parametrize("option", ["--bootsize", "--swap", "--bootoffset", "--esp-size"])
def test_malformed_other_sizes_refused(problems_of: ProblemsOf, option: str) -> None:
    exactly_one(problems_of("--tarball", TARBALL, f"{option}=12Q"), f"{option}:")


@pytest.mark.parametrize(("option", "value"), [
    ("--roottype", "zfs"), ("--boottype", "ntfs"), ("--bootflag", "active"),
    ("--part-type", "apm"), ("--log-level", "loud"), ("--bootstrap-tool", "cdebootstrap"),
])
def test_bad_choices_refused(problems_of: ProblemsOf, option: str, value: str) -> None:
    exactly_one(problems_of("--tarball", TARBALL, option, value), f"{option}:",
                f"'{value}' is not one of")


@pytest.mark.parametrize("value", ["0", "-3", "soon"])
def test_hook_timeout_must_be_positive(problems_of: ProblemsOf, value: str) -> None:
    exactly_one(problems_of("--tarball", TARBALL, f"--hook-timeout={value}"),
                "--hook-timeout:")


# --- architecture, distribution, mirrors ---------------------------------------


def test_unknown_arch_refused(problems_of: ProblemsOf) -> None:
    exactly_one(problems_of("--tarball", TARBALL, "--arch", "sparc"),
                "--arch", "unknown architecture 'sparc'")


def test_foreign_arch_without_binfmt_handler(problems_of: ProblemsOf) -> None:
    exactly_one(problems_of("--tarball", TARBALL, "--arch", "riscv64"),
                "--arch riscv64", "qemu-riscv64", "is not registered")


def test_host_arch_is_the_default(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL)
    assert plan.arch == "amd64" and plan.foreign is None


@pytest.mark.parametrize(("name", "codename"), [
    (None, "trixie"), ("stable", "trixie"), ("oldstable", "bookworm"),
    ("testing", "forky"), ("unstable", "sid"), ("sid", "sid"),
    ("bookworm", "bookworm"), ("Bookworm", "bookworm"),
])
def test_distribution_resolved_with_today(plan_of: PlanOf, name: str | None,
                                          codename: str) -> None:
    extra = ("--distribution", name) if name else ()
    assert plan_of("--tarball", TARBALL, *extra).distribution == codename


def test_unknown_distribution_refused(problems_of: ProblemsOf) -> None:
    exactly_one(problems_of("--tarball", TARBALL, "--distribution", "hamm2"),
                "--distribution 'hamm2'", "bookworm")


def test_mirror_from_host_sources(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL)
    assert plan.mirror == MIRROR + "/"
    assert plan.apt_mirror == plan.mirror


def test_no_mirror_in_host_sources(host: Host, tmp_path: Path) -> None:
    empty = tmp_path / "empty-apt"
    empty.mkdir()
    with pytest.raises(UsageError) as info:
        make_plan(parse("--tarball", TARBALL), dataclasses.replace(host, etc_apt=empty))
    exactly_one(info.value.problems, "no Debian mirror", "--mirror")


def test_mirror_option_wins(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL, "--mirror", "http://other.example/debian")
    assert plan.mirror == "http://other.example/debian"


@pytest.mark.parametrize("option", ["--mirror", "--apt-mirror"])
@pytest.mark.parametrize("url", ["mirror.example/debian", "http://", "gopher://x.example/d",
                                 "http://mirror.example/deb ian"])
def test_bad_mirror_url_refused(problems_of: ProblemsOf, option: str, url: str) -> None:
    problems = problems_of("--tarball", TARBALL, "--configure-apt", option, url)
    exactly_one(problems, f"{option}:", "is not an http")


def test_apt_mirror_requires_configure_apt(problems_of: ProblemsOf) -> None:
    exactly_one(problems_of("--tarball", TARBALL, "--apt-mirror", MIRROR),
                "--apt-mirror", "--configure-apt")


def test_apt_mirror_with_configure_apt(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL, "--configure-apt", "--apt-mirror",
                   "http://image.example/debian")
    assert plan.apt_mirror == "http://image.example/debian"
    assert plan.mirror == MIRROR + "/"


# --- bootstrap options and tool -----------------------------------------------


def test_debootstrapopts_parsed(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL, "--debootstrapopts",
                   "variant=minbase components=main,contrib")
    assert plan.variant == "minbase"
    assert plan.components == ("main", "contrib")
    assert plan.bootstrap_tool == "mmdebstrap"


def test_debootstrapopts_unknown_word_refused(problems_of: ProblemsOf) -> None:
    exactly_one(problems_of("--tarball", TARBALL, "--debootstrapopts", "frobnicate=1"),
                "--debootstrapopts", "unknown option 'frobnicate'")


@pytest.mark.parametrize("word", ["variant", "variant=", "include"])
def test_debootstrapopts_key_needs_value(problems_of: ProblemsOf, word: str) -> None:
    key = word.rstrip("=")
    exactly_one(problems_of("--tarball", TARBALL, "--debootstrapopts", word),
                "--debootstrapopts", f"'{key}' needs a value")


def test_debootstrapopts_flag_takes_no_value(problems_of: ProblemsOf) -> None:
    exactly_one(problems_of("--tarball", TARBALL, "--debootstrapopts", "merged-usr=yes"),
                "--debootstrapopts", "'merged-usr' takes no value")


def test_debootstrapopts_missing_keyring(problems_of: ProblemsOf, tmp_path: Path) -> None:
    exactly_one(problems_of("--tarball", TARBALL, "--debootstrapopts",
                            f"keyring={tmp_path / 'no.gpg'}"),
                "--debootstrapopts", "keyring", "does not exist")


def test_exclude_falls_back_to_debootstrap_with_a_note(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL, "--debootstrapopts", "exclude=nano")
    assert plan.bootstrap_tool == "debootstrap"
    assert plan.opt("exclude") == "nano"
    assert any("debootstrap instead of mmdebstrap" in n and "exclude" in n
               for n in plan.notes)


def test_no_fallback_note_by_default(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL)
    assert plan.bootstrap_tool == "mmdebstrap"
    assert not plan.notes


def test_debootstrap_on_request(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL, "--bootstrap-tool", "debootstrap",
                   "--debootstrapopts", "exclude=nano")
    assert plan.bootstrap_tool == "debootstrap"
    assert not plan.notes


def test_missing_bootstrap_tool(problems_of: ProblemsOf, plan_of: PlanOf,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_module.shutil, "which", lambda name: None)
    exactly_one(problems_of("--tarball", TARBALL), "--bootstrap-tool",
                "mmdebstrap is not installed")
    assert plan_of("--tarball", TARBALL, "--dry-run").bootstrap_tool == "mmdebstrap"


def test_no_check_gpg_warns(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL, "--no-check-gpg")
    assert any("NOT be verified" in n for n in plan.notes)


# --- kernels and packages -------------------------------------------------------


@pytest.mark.parametrize(("arch", "kernel"), [
    ("amd64", "linux-image-amd64"), ("i386", "linux-image-686-pae"),
    ("arm64", "linux-image-arm64"), ("armhf", "linux-image-armmp"),
    ("armel", "linux-image-marvell"), ("ppc64el", "linux-image-powerpc64le"),
    ("s390x", "linux-image-s390x"),
])
def test_default_kernel_per_arch(host: Host, arch: str, kernel: str) -> None:
    native = dataclasses.replace(host, arch=arch)
    plan = make_plan(parse("--tarball", TARBALL, "--arch", arch), native)
    assert plan.kernel_package == kernel == KERNELS[arch]
    assert kernel in plan.packages


def test_kernel_package_overrides(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL, "--kernel-package", "linux-image-rt-amd64")
    assert plan.kernel_package == "linux-image-rt-amd64"
    assert "linux-image-rt-amd64" in plan.packages
    assert "linux-image-amd64" not in plan.packages


def test_bad_kernel_package_names_the_option(problems_of: ProblemsOf) -> None:
    exactly_one(problems_of("--tarball", TARBALL, "--kernel-package", "Linux Image"),
                "--kernel-package", "'Linux Image'")


def test_no_kernel_wins_over_kernel_package(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL, "--no-kernel", "--kernel-package",
                   "linux-image-rt-amd64")
    assert plan.kernel_package is None
    assert not any(p.startswith("linux-image") for p in plan.packages)
    assert any("--no-kernel wins over --kernel-package" in n for n in plan.notes)


def test_no_kernel_refused_for_an_iso(problems_of: ProblemsOf) -> None:
    exactly_one(problems_of("--iso", "live.iso", "--no-kernel"), "--no-kernel", "--iso",
                "kernel to boot")


@pytest.mark.parametrize("output", [("--squash", "live"), ("--image", "d.img")])
def test_no_kernel_accepted_with_a_warning_as_in_1x(plan_of: PlanOf,
                                                    output: tuple[str, str]) -> None:
    """1.x accepted it: the hook installs its own kernel."""
    plan = plan_of(*output, "--size", "3G", "--no-kernel")
    assert plan.kernel_package is None
    (note,) = [n for n in plan.notes if n.startswith("--no-kernel")]
    assert f"the customisation hook must provide one for the {output[0]} output" in note


def test_packages_for_a_plain_tarball(plan_of: PlanOf) -> None:
    assert plan_of("--tarball", TARBALL).packages == ("linux-image-amd64", "acpid")


def test_sudo_package(plan_of: PlanOf) -> None:
    assert "sudo" in plan_of("--tarball", TARBALL, "--sudo").packages
    assert "sudo" not in plan_of("--tarball", TARBALL, "--no-sudo").packages


@pytest.mark.parametrize(("output", "live"), [
    (("--squash", "live"), True), (("--iso", "live.iso"), True),
    (("--tarball", TARBALL), False), (("--image", "d.img"), False),
])
def test_live_boot_only_for_live_outputs(plan_of: PlanOf, output: tuple[str, str],
                                         live: bool) -> None:
    assert ("live-boot" in plan_of(*output, "--size", "3G").packages) is live


def test_acpid(plan_of: PlanOf, out: Path) -> None:
    assert "acpid" in plan_of("--tarball", TARBALL).packages
    assert "acpid" not in plan_of("--tarball", TARBALL, "--no-acpid").packages
    # acpid's postinst fails under qemu-user
    foreign = plan_of("--tarball", TARBALL, "--arch", "arm64")
    assert foreign.foreign is not None
    assert "acpid" not in foreign.packages
    assert "acpid" in plan_of("--tarball", TARBALL, "--arch", "i386").packages


@pytest.mark.parametrize(("output", "added"), [
    (("--squash", "live"), True), (("--iso", "live.iso"), True),
    (("--image", "d.img"), True), (("--tarball", TARBALL), False),
])
def test_systemd_sysv_for_bootable_minbase(plan_of: PlanOf, output: tuple[str, str],
                                           added: bool) -> None:
    minbase = plan_of(*output, "--size", "3G", "--debootstrapopts", "variant=minbase")
    assert ("systemd-sysv" in minbase.packages) is added
    assert "systemd-sysv" not in plan_of(*output, "--size", "3G").packages


def test_package_entries_in_order_without_duplicates(plan_of: PlanOf) -> None:
    plan = plan_of("--squash", "live", "--sudo", "--package", "less", "--package", "sudo",
                   "--package", "linux-image-amd64", "--package", "less",
                   "--package", "live-boot")
    assert plan.packages == ("linux-image-amd64", "live-boot", "sudo", "acpid", "less")


def test_bad_package_name_refused(problems_of: ProblemsOf) -> None:
    exactly_one(problems_of("--tarball", TARBALL, "--package", "Bad Name"),
                "--package", "'Bad Name'")


@pytest.mark.parametrize(("networkd", "expected"), [
    ((), ["systemd-resolved"]),
    (("--no-systemd-networkd",), ["ifupdown", "isc-dhcp-client"]),
])
def test_dhcp_packages(plan_of: PlanOf, networkd: tuple[str, ...],
                       expected: list[str]) -> None:
    plan = plan_of("--tarball", TARBALL, "--enable-dhcp", *networkd)
    assert all(p in plan.packages for p in expected)


def test_custom_packages(plan_of: PlanOf, problems_of: ProblemsOf, tmp_path: Path) -> None:
    deb = tmp_path / "tool_1.0_all.deb"
    deb.write_bytes(b"!<arch>\n")
    txt = tmp_path / "notes.txt"
    txt.write_text("")
    assert plan_of("--tarball", TARBALL, "--custom-package", str(deb)).custom_debs == (deb,)
    exactly_one(problems_of("--tarball", TARBALL, "--custom-package", str(tmp_path / "x.deb")),
                "--custom-package", "does not exist")
    exactly_one(problems_of("--tarball", TARBALL, "--custom-package", str(txt)),
                "--custom-package", "not a .deb file")


# --- configuration ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["bad_host", "-lead", "trail-", "a..b", "x" * 64, "ä"])
def test_bad_hostname_refused(problems_of: ProblemsOf, name: str) -> None:
    exactly_one(problems_of("--tarball", TARBALL, f"--hostname={name}"),
                "--hostname", "not a valid host name")


@pytest.mark.parametrize("name", ["debian", "live-1", "build.example.org"])
def test_good_hostnames(plan_of: PlanOf, name: str) -> None:
    assert plan_of("--tarball", TARBALL, "--hostname", name).settings.hostname == name


@pytest.mark.parametrize(("value", "fragment"), [
    (SECRET, "has no '/'"),
    (f"/{SECRET}", "name before '/' is empty"),
    (f"Alice/{SECRET}", "not a valid user name"),
    (f"bad name/{SECRET}", "not a valid user name"),
    (f"root/{SECRET}", "--root-password"),
])
def test_bad_user_refused_without_the_password(problems_of: ProblemsOf, value: str,
                                               fragment: str) -> None:
    problems = problems_of("--tarball", TARBALL, "--user", value)
    exactly_one(problems, "--user", fragment)
    assert not any(SECRET in p for p in problems)


def test_users(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL, "--user", f"alice/{SECRET}", "--user", "bob/")
    alice, bob = plan.system.users
    assert alice.name == "alice" and alice.password_hash and SECRET not in alice.password_hash
    assert bob.name == "bob" and bob.empty_password
    assert SECRET not in repr(plan)


def test_same_user_twice_refused(problems_of: ProblemsOf) -> None:
    exactly_one(problems_of("--tarball", TARBALL, "--user", "a/x", "--user", "a/y"),
                "--user", "twice")


def test_sudo_without_users_notes(plan_of: PlanOf) -> None:
    assert any("--sudo without --user" in n
               for n in plan_of("--tarball", TARBALL, "--sudo").notes)


def test_root_password_with_lock_refused(problems_of: ProblemsOf) -> None:
    problems = problems_of("--tarball", TARBALL, "--root-password", SECRET,
                           "--lock-root-password")
    exactly_one(problems, "--root-password", "--lock-root-password")
    assert not any(SECRET in p for p in problems)


def test_root_password_is_hashed(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL, "--root-password", SECRET)
    assert plan.system.root_password_hash
    assert SECRET not in plan.system.root_password_hash


def test_networkd_off_needs_initramfs(problems_of: ProblemsOf) -> None:
    exactly_one(problems_of("--tarball", TARBALL, "--no-systemd-networkd",
                            "--no-update-initramfs"),
                "--no-systemd-networkd", "--no-update-initramfs")


def hook(path: Path, body: str = "#!/bin/sh\nexit 0\n", mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(mode)
    return path


def test_hook_found_relative_to_cwd(plan_of: PlanOf, host: Host) -> None:
    script = hook(host.cwd / "hooks" / "live.sh")
    assert plan_of("--tarball", TARBALL, "--customize", "hooks/live.sh").system.hook == script


def test_hook_missing_refused(problems_of: ProblemsOf) -> None:
    exactly_one(problems_of("--tarball", TARBALL, "--customize", "hooks/nope.sh"),
                "--customize", "hooks/nope.sh not found")


def test_hook_not_executable_refused(problems_of: ProblemsOf, host: Host) -> None:
    hook(host.cwd / "h.sh", mode=0o644)
    exactly_one(problems_of("--tarball", TARBALL, "--customize", "h.sh"),
                "--customize", "not executable")


def test_hook_without_interpreter_refused(problems_of: ProblemsOf, host: Host) -> None:
    hook(host.cwd / "h.sh", body="echo hi\n")
    exactly_one(problems_of("--tarball", TARBALL, "--customize", "h.sh"),
                "--customize", "#!")


def test_hook_in_unknown_home_refused(problems_of: ProblemsOf) -> None:
    exactly_one(problems_of("--tarball", TARBALL, "--customize", "~no-such-user-x/h.sh"),
                "--customize", "~no-such-user-x")


def test_owner(plan_of: PlanOf, problems_of: ProblemsOf) -> None:
    assert plan_of("--tarball", TARBALL, "--owner", "builder").settings.owner == "builder"
    exactly_one(problems_of("--tarball", TARBALL, "--owner", "nobody-here"),
                "--owner", "no user 'nobody-here'")


@pytest.mark.parametrize("value", ["xz", "zstd:19", "gzip:9", "lzo:1", "lz4", "lzma"])
def test_squash_compression(plan_of: PlanOf, value: str) -> None:
    assert plan_of("--squash", "live", "--squash-compression", value).settings \
        .squash_compression == value


@pytest.mark.parametrize("value", ["bzip2", "zstd:max", "zstd:", "xz:9", "lz4:1",
                                   "zstd:23", "gzip:0", "gzip:10", "zstd:\u0661"])
def test_squash_compression_refused(problems_of: ProblemsOf, value: str) -> None:
    exactly_one(problems_of("--squash", "live", "--squash-compression", value),
                "--squash-compression", repr(value))


# --- iso ---------------------------------------------------------------------------


def test_iso_volume_id(plan_of: PlanOf, problems_of: ProblemsOf) -> None:
    assert plan_of("--iso", "l.iso", "--iso-volume-id", "MY_LIVE_1").output == "iso"
    for bad in ("debian live", "X" * 33, ""):
        exactly_one(problems_of("--iso", "l.iso", "--iso-volume-id", bad),
                    "--iso-volume-id")


def test_preseed_requires_installer(problems_of: ProblemsOf, plan_of: PlanOf,
                                    tmp_path: Path) -> None:
    preseed = tmp_path / "preseed.cfg"
    preseed.write_text("")
    exactly_one(problems_of("--iso", "l.iso", "--preseed", str(preseed)),
                "--preseed requires --installer")
    assert plan_of("--iso", "l.iso", "--preseed", str(preseed), "--installer").output == "iso"
    exactly_one(problems_of("--iso", "l.iso", "--installer", "--preseed",
                            str(tmp_path / "no.cfg")), "--preseed", "does not exist")


@pytest.mark.parametrize("option", [("--installer",), ("--splash", "x.png"),
                                    ("--preseed", "p.cfg")])
def test_iso_only_options(problems_of: ProblemsOf, option: tuple[str, ...]) -> None:
    exactly_one(problems_of("--squash", "live", *option), option[0], "only applies to --iso")


def test_secure_boot_fetches_from_the_bootstrap_source(plan_of: PlanOf, tmp_path: Path) -> None:
    spec = plan_of("--iso", "l.iso").iso
    assert spec is not None and spec.secure_boot
    assert (spec.components, spec.keyring, spec.check_signatures) == (("main",), None, True)
    keyring = tmp_path / "archive.gpg"
    keyring.write_bytes(b"")
    spec = plan_of("--iso", "l.iso", "--no-check-gpg", "--debootstrapopts",
                   f"components=main,contrib keyring={keyring}").iso
    assert spec is not None and spec.secure_boot
    assert (spec.components, spec.keyring, spec.check_signatures) == (
        ("main", "contrib"), keyring, False)
    spec = plan_of("--iso", "l.iso", "--no-secure-boot").iso
    assert spec is not None and not spec.secure_boot


def test_iso_arches(host: Host) -> None:
    with pytest.raises(UsageError) as info:
        make_plan(parse("--iso", "l.iso", "--arch", "s390x"),
                  dataclasses.replace(host, arch="s390x"))
    exactly_one(info.value.problems, "--iso", "s390x")


# --- all together ---------------------------------------------------------------------


def test_all_problems_reported_together(problems_of: ProblemsOf, out: Path) -> None:
    problems = problems_of("--image", str(out / "d.img"), "--tarball", TARBALL,
                           "--hostname", "bad_host", "--apt-mirror", MIRROR,
                           "--arch", "sparc", "--owner", "nobody-here")
    for fragment in ("only one output", "--hostname", "--apt-mirror", "--arch", "--owner"):
        exactly_one(problems, fragment)


def test_debian_cd_call(plan_of: PlanOf, host: Host) -> None:
    """How debian-cd called 1.x to build its live images."""
    script = hook(host.cwd / "hooks" / "live-amd64.sh")
    (host.cwd / "out").mkdir()
    plan = plan_of(
        "--owner", "builder", "--verbose", "--sudo", "--lock-root-password",
        "--enable-dhcp", "--configure-apt", "--apt-mirror", "http://image.example/debian",
        "--mirror", MIRROR, "--log", "x.log", "--log-level", "debug", "--user", "user/live",
        "--arch", "amd64", "--distribution", "bookworm",
        "--customize", "hooks/live-amd64.sh", "--squash", "out/amd64")
    assert plan.output == "squash"
    assert plan.distribution == "bookworm" and plan.arch == "amd64"
    assert plan.mirror == MIRROR and plan.apt_mirror == "http://image.example/debian"
    assert plan.system.hook == script
    assert [u.name for u in plan.system.users] == ["user"]
    assert plan.packages == ("linux-image-amd64", "live-boot", "sudo", "acpid",
                             "systemd-resolved")
    s = plan.settings
    assert s.owner == "builder" and s.verbose and s.lock_root_password and s.enable_dhcp
    assert s.log == "x.log" and s.log_level == "debug"
    assert plan.system.root_password_hash is None


@pytest.mark.parametrize(("flag", "field", "value"), [
    ("--no-extlinux", "extlinux", False), ("--no-sudo", "sudo", False),
    ("--no-systemd-networkd", "systemd_networkd", False), ("--no-grub", "grub", False),
    ("--no-use-uefi", "use_uefi", False), ("--no-enable-dhcp", "enable_dhcp", False),
    ("--no-kernel", "no_kernel", True), ("--no-acpid", "no_acpid", True),
    ("--no-update-initramfs", "no_update_initramfs", True),
    ("--update-initramfs", "no_update_initramfs", False),  # 1.x had both spellings
])
def test_1x_negations_parse(flag: str, field: str, value: bool) -> None:
    assert getattr(parse(flag), field) is value


def test_last_boolean_flag_wins() -> None:
    assert parse("--sudo", "--no-sudo").sudo is False
    assert parse("--no-sudo", "--sudo").sudo is True


# --- never anything but a plan or a UsageError ----------------------------------------

TEXT_OPTIONS = [o.name for o in OPTIONS if o.kind is not Kind.BOOL]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(TEXT_OPTIONS), st.text(max_size=40)),
                min_size=1, max_size=4),
       st.sampled_from([("--tarball", TARBALL), ("--squash", "live"),
                        ("--image", "d.img", "--size", "3G"), ("--iso", "l.iso")]))
def test_random_values_plan_or_usage_error(host: Host, pairs: list[tuple[str, str]],
                                           output: tuple[str, ...]) -> None:
    argv = [*output, *(f"--{name}={value}" for name, value in pairs)]
    try:
        plan = make_plan(parse(*argv), host)
    except UsageError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
    else:
        assert isinstance(plan, Plan)
