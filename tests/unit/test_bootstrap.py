"""bootstrap.py: the mmdebstrap and debootstrap command lines, the qemu-user
handler copy, and the bootstrap sequence recorded by a RecordingRunner."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.fakes import RecordingRunner
from tests.unit.conftest import MIRROR
from vmdebootstrap.host import resources
from vmdebootstrap.host.run import CommandError, Result
from vmdebootstrap.plan import Plan
from vmdebootstrap.root import bootstrap as bs
from vmdebootstrap.root.bootstrap import (
    debootstrap_argv,
    install_handler,
    mmdebstrap_argv,
    remove_handler,
)

PlanOf = Callable[..., Plan]
TARBALL = "root.tar.gz"
TARGET = Path("/srv/build/root")
INTERPRETER = "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"


def binfmt_without_f(binfmt_dir: Path, interpreter: str) -> None:
    """Re-register the fake qemu-aarch64 handler without binfmt's F flag."""
    (binfmt_dir / "qemu-aarch64").write_text(
        f"enabled\ninterpreter {interpreter}\nflags: P\noffset 0\n"
        "magic 7f454c460201010000000000000000000200b700\n"
        "mask ffffffffffffff00fffffffffffffffffeffffff\n")


@pytest.fixture
def qemu(tmp_path: Path) -> Path:
    """A stand-in for qemu-aarch64-static on the host."""
    path = tmp_path / "qemu bin" / "qemu-aarch64-static"
    path.parent.mkdir()
    path.write_bytes(b"\x7fELF fake qemu")
    path.chmod(0o755)
    return path


@pytest.fixture
def foreign_no_f(plan_of: PlanOf, binfmt_dir: Path, qemu: Path) -> Plan:
    binfmt_without_f(binfmt_dir, INTERPRETER)
    plan = plan_of("--tarball", TARBALL, "--arch", "arm64", "--foreign", str(qemu))
    assert plan.foreign is not None and not plan.foreign.entry.fix_binary
    return plan


def positional(argv: list[str]) -> list[str]:
    return argv[-3:]


def options(argv: list[str]) -> list[str]:
    return argv[1:-3]


# --- mmdebstrap ----------------------------------------------------------------


def test_mmdebstrap_native(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL)
    argv = mmdebstrap_argv(plan, TARGET)
    assert argv[0] == "mmdebstrap"
    assert positional(argv) == [plan.distribution, str(TARGET), plan.mirror]
    assert plan.mirror.rstrip("/") == MIRROR  # the fake host's /etc/apt
    opts = options(argv)
    assert "--mode=root" in opts
    assert "--architectures=amd64" in opts
    assert "--variant=debootstrap" in opts
    assert "--components=main" in opts
    assert "--include=linux-image-amd64,acpid" in opts
    assert not any(o.startswith("--setup-hook") for o in opts)
    assert not any("AllowInsecure" in o or "AllowUnauthenticated" in o for o in opts)
    assert all(o.startswith("--") for o in opts)


def test_mmdebstrap_foreign_with_f_flag_needs_no_copy(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL, "--arch", "arm64")
    assert plan.foreign is not None and plan.foreign.entry.fix_binary
    argv = mmdebstrap_argv(plan, TARGET)
    assert "--architectures=arm64" in argv
    assert not any(o.startswith("--setup-hook") for o in argv)
    assert "acpid" not in ",".join(argv)  # acpid fails under qemu-user


def test_mmdebstrap_foreign_without_f_flag_copies_the_handler(foreign_no_f: Plan,
                                                              qemu: Path) -> None:
    argv = mmdebstrap_argv(foreign_no_f, TARGET)
    hooks = [o for o in argv if o.startswith("--setup-hook=")]
    assert len(hooks) == 1
    hook = hooks[0].removeprefix("--setup-hook=")
    assert "cp -p" in hook and INTERPRETER in hook
    assert argv.index(hooks[0]) < len(argv) - 3


def test_setup_hook_really_copies_the_handler(foreign_no_f: Plan, qemu: Path,
                                              tmp_path: Path) -> None:
    """Run the hook the way mmdebstrap does (sh -c, root as $1), in tmp_path."""
    hook = next(o for o in mmdebstrap_argv(foreign_no_f, TARGET)
                if o.startswith("--setup-hook=")).removeprefix("--setup-hook=")
    root = tmp_path / "chroot root"
    root.mkdir()
    subprocess.run(["sh", "-c", hook, "sh", str(root)], check=True, timeout=10)
    copied = root / INTERPRETER.lstrip("/")
    assert copied.read_bytes() == qemu.read_bytes()
    assert os.access(copied, os.X_OK)


def test_mmdebstrap_minbase_and_components(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL, "--debootstrapopts",
                   "variant=minbase components=main,contrib,non-free-firmware")
    argv = mmdebstrap_argv(plan, TARGET)
    assert "--variant=minbase" in argv
    assert "--components=main,contrib,non-free-firmware" in argv


def test_mmdebstrap_minbase_bootable_output_gets_an_init(plan_of: PlanOf, out: Path) -> None:
    plan = plan_of("--squash", str(out / "live"), "--debootstrapopts", "variant=minbase")
    include = next(o for o in mmdebstrap_argv(plan, TARGET) if o.startswith("--include="))
    assert "systemd-sysv" in include.split("=", 1)[1].split(",")
    assert "live-boot" in include


def test_mmdebstrap_include_words_merge_without_duplicates(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL, "--package", "vim", "--debootstrapopts",
                   "include=less,vim,,acpid")
    includes = [o for o in mmdebstrap_argv(plan, TARGET) if o.startswith("--include=")]
    assert includes == ["--include=linux-image-amd64,acpid,vim,less"]


def test_mmdebstrap_custom_debs(plan_of: PlanOf, tmp_path: Path) -> None:
    debs = []
    for name in ("local-tool_1.0_all.deb", "other_2.0_amd64.deb"):
        deb = tmp_path / name
        deb.write_bytes(b"!<arch>\n")
        debs.append(deb)
    plan = plan_of("--tarball", TARBALL, *(w for d in debs for w in ("--custom-package",
                                                                      str(d))))
    argv = mmdebstrap_argv(plan, TARGET)
    for deb in debs:
        assert f"--include={deb.resolve()}" in argv
    assert positional(argv)[1] == str(TARGET)


def test_mmdebstrap_keyring(plan_of: PlanOf, tmp_path: Path) -> None:
    keyring = tmp_path / "archive-keyring.gpg"
    keyring.write_bytes(b"\x99")
    plan = plan_of("--tarball", TARBALL, "--debootstrapopts", f"keyring={keyring}")
    assert f"--keyring={keyring}" in mmdebstrap_argv(plan, TARGET)


@pytest.mark.parametrize("how", [("--no-check-gpg",), ("--debootstrapopts", "no-check-gpg")])
def test_mmdebstrap_no_check_gpg(plan_of: PlanOf, how: tuple[str, ...]) -> None:
    argv = mmdebstrap_argv(plan_of("--tarball", TARBALL, *how), TARGET)
    assert "--aptopt=Acquire::AllowInsecureRepositories true" in argv
    assert "--aptopt=APT::Get::AllowUnauthenticated true" in argv
    assert "--no-check-gpg" not in argv  # not an mmdebstrap option


def test_mmdebstrap_no_packages_no_include(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL, "--no-kernel", "--no-acpid")
    assert not any(o.startswith("--include") for o in mmdebstrap_argv(plan, TARGET))


# --- debootstrap ---------------------------------------------------------------


def test_debootstrap_passes_debootstrapopts_through(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL, "--bootstrap-tool", "debootstrap",
                   "--debootstrapopts", "variant=minbase components=main,contrib "
                   "exclude=nano merged-usr")
    argv = debootstrap_argv(plan, TARGET, foreign_stage=False)
    assert argv == ["debootstrap", "--arch=amd64", "--variant=minbase",
                    "--components=main,contrib", "--exclude=nano", "--merged-usr",
                    plan.distribution, str(TARGET), plan.mirror]


def test_debootstrap_foreign_stage(plan_of: PlanOf) -> None:
    plan = plan_of("--tarball", TARBALL, "--bootstrap-tool", "debootstrap", "--arch", "arm64")
    argv = debootstrap_argv(plan, TARGET, foreign_stage=True)
    assert argv[:2] == ["debootstrap", "--arch=arm64"]
    assert "--foreign" in options(argv)
    assert positional(argv) == [plan.distribution, str(TARGET), plan.mirror]
    assert "--foreign" not in debootstrap_argv(plan, TARGET, foreign_stage=False)


@pytest.mark.parametrize("how", [("--no-check-gpg",), ("--debootstrapopts", "no-check-gpg"),
                                 ("--no-check-gpg", "--debootstrapopts", "no-check-gpg")])
def test_debootstrap_no_check_gpg_once(plan_of: PlanOf, how: tuple[str, ...]) -> None:
    plan = plan_of("--tarball", TARBALL, "--bootstrap-tool", "debootstrap", *how)
    assert debootstrap_argv(plan, TARGET, False).count("--no-check-gpg") == 1


# --- the qemu-user handler in the root --------------------------------------------


def test_install_and_remove_handler(foreign_no_f: Plan, qemu: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    dest = install_handler(foreign_no_f, root)
    assert dest == root / INTERPRETER.lstrip("/")
    assert dest.read_bytes() == qemu.read_bytes()
    assert dest.stat().st_mode & 0o777 == 0o755
    remove_handler(foreign_no_f, root)
    assert not dest.exists()
    remove_handler(foreign_no_f, root)  # twice is fine
    assert dest.parent.is_dir()


def test_handler_not_copied_when_not_needed(plan_of: PlanOf, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for plan in (plan_of("--tarball", TARBALL), plan_of("--tarball", TARBALL, "--arch",
                                                        "arm64")):
        assert install_handler(plan, root) is None
        remove_handler(plan, root)
    assert list(root.iterdir()) == []


# --- the bootstrap sequence ---------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A root the bootstrap tool 'made': /dev/null exists, so no mknod is
    needed; nothing is mounted (the fake mount table stays empty)."""
    path = tmp_path / "root"
    (path / "dev").mkdir(parents=True)
    (path / "dev/null").write_text("")
    (path / "tmp").mkdir()
    table = tmp_path / "mountinfo"
    table.write_text("")
    monkeypatch.setattr(resources, "MOUNTINFO", table)
    monkeypatch.setattr(resources, "kill_processes_in", lambda root: [])
    return path


def words(calls: list[list[str]]) -> list[str]:
    """The program each call runs, looking through chroot."""
    return [c[2] if c[0] == "chroot" else c[0] for c in calls]


def test_bootstrap_mmdebstrap_is_one_command_then_the_initramfs_step(plan_of: PlanOf,
                                                                     root: Path) -> None:
    """mmdebstrap installs everything; then update-initramfs is put back
    (a root without kernels gets no initramfs: root.initramfs)."""
    runner = RecordingRunner()
    plan = plan_of("--tarball", TARBALL)
    bs.bootstrap(plan, runner, root)
    assert runner.calls == [mmdebstrap_argv(plan, root),
                            ["chroot", str(root), "dpkg-divert", "--quiet", "--local",
                             "--rename", "--remove", "/usr/sbin/update-initramfs"]]


def test_bootstrap_debootstrap_then_apt(plan_of: PlanOf, root: Path, tmp_path: Path) -> None:
    deb = tmp_path / "local_1.0_all.deb"
    deb.write_bytes(b"!<arch>\n")
    runner = RecordingRunner()
    plan = plan_of("--tarball", TARBALL, "--bootstrap-tool", "debootstrap",
                   "--custom-package", str(deb))
    bs.bootstrap(plan, runner, root)
    assert words(runner.calls) == ["debootstrap", "mount", "mount", "mount", "mount",
                                   "apt-get", "apt-get"]
    install = runner.calls[-1]
    assert install[:2] == ["chroot", str(root)]
    assert install[-3:] == ["linux-image-amd64", "acpid", "/tmp/local_1.0_all.deb"]
    assert "--no-install-recommends" in install
    assert not (root / "tmp" / deb.name).exists()  # copied in for apt, then removed
    assert not (root / "usr/sbin/policy-rc.d").exists()


def test_bootstrap_two_stage_foreign(foreign_no_f: Plan, root: Path) -> None:
    plan = foreign_no_f
    runner = RecordingRunner()
    bs.bootstrap(dataclasses.replace(plan, bootstrap_tool="debootstrap", packages=()),
                 runner, root)
    assert runner.calls[0][-4] == "--foreign"
    assert runner.calls[1] == ["chroot", str(root), "/debootstrap/debootstrap",
                               "--second-stage"]
    assert len(runner.calls) == 2  # no packages: no apt run
    assert (root / INTERPRETER.lstrip("/")).exists()  # needed for the second stage


class FailingRunner(RecordingRunner):
    def __init__(self, fail: str) -> None:
        super().__init__()
        self.fail = fail

    def run(self, argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> Result:
        result = super().run(argv, **kwargs)  # type: ignore[arg-type]
        if self.fail in self.calls[-1]:
            raise CommandError(self.calls[-1], 1, ["See the log for details"],
                               str(kwargs.get("what")))
        return result


def test_debootstrap_failure_shows_its_log(plan_of: PlanOf, root: Path) -> None:
    logfile = root / "debootstrap/debootstrap.log"
    logfile.parent.mkdir()
    logfile.write_text("".join(f"line {i}\n" for i in range(40)) + "E: Couldn't download\n")
    plan = plan_of("--tarball", TARBALL, "--bootstrap-tool", "debootstrap")
    with pytest.raises(CommandError) as info:
        bs.bootstrap(plan, FailingRunner("debootstrap"), root)
    assert info.value.tail[-1] == "E: Couldn't download"
    assert len(info.value.tail) == 20


def test_apt_failure_still_unblocks_daemons(plan_of: PlanOf, root: Path) -> None:
    plan = plan_of("--tarball", TARBALL, "--bootstrap-tool", "debootstrap")
    with pytest.raises(CommandError, match="installing packages failed"):
        bs.bootstrap(plan, FailingRunner("install"), root)
    assert not (root / "usr/sbin/policy-rc.d").exists()


def test_the_hosts_resolv_conf_does_not_stay_in_the_root(tmp_path: Path) -> None:
    host, root = tmp_path / "host", tmp_path / "root"
    for d in (host, root):
        (d / "etc").mkdir(parents=True)
    (host / "etc/resolv.conf").write_text("nameserver 192.0.2.53\n")
    (root / "etc/resolv.conf").write_text("nameserver 192.0.2.53\n")
    bs.drop_host_copies(root, host)
    assert not (root / "etc/resolv.conf").exists()
    # The image's own, or systemd-resolved's link, stays.
    (root / "etc/resolv.conf").write_text("nameserver 198.51.100.1\n")
    bs.drop_host_copies(root, host)
    assert (root / "etc/resolv.conf").exists()
    (root / "etc/resolv.conf").unlink()
    (root / "etc/resolv.conf").symlink_to("../run/systemd/resolve/stub-resolv.conf")
    bs.drop_host_copies(root, host)
    assert (root / "etc/resolv.conf").is_symlink()
