"""configure.py on a fake root under tmp_path; chroot commands are recorded."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.fakes import RecordingRunner
from tests.unit.conftest import MIRROR, SECRET
from vmdebootstrap.host.run import Result
from vmdebootstrap.plan import Plan
from vmdebootstrap.root import configure as cf
from vmdebootstrap.root.configure import _edit_shadow

PlanOf = Callable[..., Plan]
TARBALL = "root.tar.gz"
APT_MIRROR = "http://apt-mirror.example/debian"

SHADOW = """\
root:*:19800:0:99999:7:::
daemon:*:19800:0:99999:7:::
_apt:*:19800:0:99999:7:::
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    for d in ("etc/apt/sources.list.d", "etc/ssh", "etc/systemd/system",
              "usr/lib/systemd/system", "usr/sbin", "var/lib/dbus"):
        (path / d).mkdir(parents=True)
    shadow = path / "etc/shadow"
    shadow.write_text(SHADOW)
    shadow.chmod(0o600)
    return path


def shadow_entry(root: Path, name: str) -> list[str]:
    for line in (root / "etc/shadow").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    raise AssertionError(f"{name} not in shadow")


def units(root: Path, *names: str) -> None:
    for name in names:
        (root / "usr/lib/systemd/system" / name).write_text("[Unit]\n")


# --- /etc/shadow ---------------------------------------------------------------


def test_edit_shadow_sets_the_hash_only_on_that_line(root: Path) -> None:
    _edit_shadow(root, "root", password="$y$j9T$salt$hash")
    lines = (root / "etc/shadow").read_text().splitlines()
    assert lines[0] == "root:$y$j9T$salt$hash:19800:0:99999:7:::"
    assert lines[1:] == SHADOW.splitlines()[1:]
    assert (root / "etc/shadow").read_text().endswith(":::\n")


def test_edit_shadow_lock_and_expire(root: Path) -> None:
    _edit_shadow(root, "root", password="$6$x$y")
    _edit_shadow(root, "root", lock=True)
    assert shadow_entry(root, "root")[1] == "!$6$x$y"
    _edit_shadow(root, "root", lock=True)  # locking twice adds one '!'
    assert shadow_entry(root, "root")[1] == "!$6$x$y"
    _edit_shadow(root, "daemon", password="", expire=True)
    fields = shadow_entry(root, "daemon")
    assert fields[1] == "" and fields[2] == "0"
    assert fields[3:] == ["0", "99999", "7", "", "", ""]


def test_edit_shadow_keeps_owner_and_mode(root: Path) -> None:
    shadow = root / "etc/shadow"
    before = shadow.stat()
    _edit_shadow(root, "root", password="$6$x$y")
    after = shadow.stat()
    assert stat.S_IMODE(after.st_mode) == 0o600
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert sorted(p.name for p in (root / "etc").iterdir() if p.name.startswith(".")) == []


def test_edit_shadow_unknown_user(root: Path) -> None:
    with pytest.raises(ValueError, match="alice"):
        _edit_shadow(root, "alice", password="$6$x$y")
    assert (root / "etc/shadow").read_text() == SHADOW
    assert not (root / "etc/.shadow.vmdebootstrap").exists()


def test_edit_shadow_no_prefix_match(root: Path) -> None:
    with pytest.raises(ValueError):
        _edit_shadow(root, "roo", password="x")
    with pytest.raises(ValueError):
        _edit_shadow(root, "apt", password="x")


# --- host name ----------------------------------------------------------------------


def test_set_hostname(plan_of: PlanOf, root: Path) -> None:
    cf.set_hostname(plan_of("--tarball", TARBALL, "--hostname", "live-box"), root)
    assert (root / "etc/hostname").read_text() == "live-box\n"
    hosts = (root / "etc/hosts").read_text().splitlines()
    assert "127.0.1.1\tlive-box" in hosts
    assert "127.0.0.1\tlocalhost" in hosts
    assert any(line.startswith("::1") for line in hosts)


def test_files_we_write_get_debians_modes(plan_of: PlanOf, root: Path) -> None:
    """mmdebstrap copies the host's /etc/hostname with the host's mode (0755
    on some hosts); ours are 0644 whatever they replace."""
    for name in ("hostname", "hosts"):
        (root / "etc" / name).write_text("from the host\n")
        (root / "etc" / name).chmod(0o755)
    (root / "etc/apt").mkdir(parents=True, exist_ok=True)
    plan = plan_of("--tarball", TARBALL, "--configure-apt", "--enable-dhcp")
    cf.set_hostname(plan, root)
    cf.configure_apt(plan, root)
    cf.configure_network(plan, root)
    for rel in ("etc/hostname", "etc/hosts", "etc/apt/sources.list",
                "etc/systemd/network/80-vmdebootstrap-dhcp.network"):
        assert stat.S_IMODE((root / rel).stat().st_mode) == 0o644, rel


def test_machine_id_is_empty_where_systemd_is_installed(root: Path) -> None:
    cf.make_safe_to_share(root)
    assert not (root / "etc/machine-id").exists()  # no systemd: nothing to fill it in
    (root / "usr/lib/systemd").mkdir(parents=True, exist_ok=True)
    (root / "usr/lib/systemd/systemd").write_text("")
    cf.make_safe_to_share(root)
    machine_id = root / "etc/machine-id"
    assert machine_id.read_text() == ""
    assert stat.S_IMODE(machine_id.stat().st_mode) == 0o444


# --- accounts ---------------------------------------------------------------------


class UseraddRunner(RecordingRunner):
    """Records argv; useradd adds the shadow line the real one would."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def run(self, argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> Result:
        result = super().run(argv, **kwargs)  # type: ignore[arg-type]
        args = self.calls[-1]
        if args[:3] == ["chroot", str(self.root), "useradd"]:
            with (self.root / "etc/shadow").open("a") as fh:
                fh.write(f"{args[-1]}:!:20000:0:99999:7:::\n")
        return result


def test_configure_accounts_never_puts_secrets_on_a_command_line(plan_of: PlanOf,
                                                                 root: Path) -> None:
    plan = plan_of("--tarball", TARBALL, "--root-password", SECRET,
                   "--user", f"alice/{SECRET}", "--user", "bob/", "--sudo")
    runner = UseraddRunner(root)
    cf.configure_accounts(plan, runner, root)
    chroot = ["chroot", str(root)]
    assert runner.calls == [
        [*chroot, "useradd", "--create-home", "--shell", "/bin/bash", "alice"],
        [*chroot, "usermod", "-a", "-G", "sudo", "alice"],
        [*chroot, "useradd", "--create-home", "--shell", "/bin/bash", "bob"],
        [*chroot, "usermod", "-a", "-G", "sudo", "bob"],
    ]
    hashes = [plan.system.root_password_hash, plan.system.users[0].password_hash]
    assert all(hashes)
    for argv in runner.calls:
        for word in argv:
            assert SECRET not in word
            assert not any(h and h in word for h in hashes)
    assert all(i is None or SECRET.encode() not in i for i in runner.inputs)
    assert shadow_entry(root, "root")[1] == plan.system.root_password_hash
    assert shadow_entry(root, "alice")[1] == plan.system.users[0].password_hash
    bob = shadow_entry(root, "bob")
    assert bob[1] == "" and bob[2] == "0"  # empty, must change at first login
    assert SECRET not in (root / "etc/shadow").read_text()


def test_configure_accounts_lock_root(plan_of: PlanOf, root: Path) -> None:
    runner = RecordingRunner()
    cf.configure_accounts(plan_of("--tarball", TARBALL, "--lock-root-password"), runner, root)
    assert shadow_entry(root, "root")[1] == "!*"
    assert runner.calls == []


def test_configure_accounts_without_sudo(plan_of: PlanOf, root: Path) -> None:
    runner = UseraddRunner(root)
    cf.configure_accounts(plan_of("--tarball", TARBALL, "--user", "carol/"), runner, root)
    assert [c[2] for c in runner.calls] == ["useradd"]
    assert shadow_entry(root, "root")[1] == "*"  # untouched


# --- apt sources ----------------------------------------------------------------------


def apt_plan(plan_of: PlanOf, *extra: str) -> Plan:
    return plan_of("--tarball", TARBALL, "--configure-apt", "--apt-mirror", APT_MIRROR,
                   *extra)


def test_configure_apt_writes_the_apt_mirror(plan_of: PlanOf, root: Path) -> None:
    plan = apt_plan(plan_of, "--debootstrapopts", "components=main,contrib")
    cf.configure_apt(plan, root)
    assert (root / "etc/apt/sources.list").read_text() == (
        f"deb {APT_MIRROR} {plan.distribution} main contrib\n"
        f"deb {APT_MIRROR} {plan.distribution}-updates main contrib\n")
    assert MIRROR not in (root / "etc/apt/sources.list").read_text()


@pytest.mark.parametrize("dist", ["sid", "unstable", "experimental"])
def test_configure_apt_no_updates_for_sid(plan_of: PlanOf, root: Path, dist: str) -> None:
    plan = apt_plan(plan_of, "--distribution", dist)
    cf.configure_apt(plan, root)
    assert (root / "etc/apt/sources.list").read_text() == \
        f"deb {APT_MIRROR} {plan.distribution} main\n"


def test_configure_apt_removes_build_mirror_sources(plan_of: PlanOf, root: Path) -> None:
    listdir = root / "etc/apt/sources.list.d"
    (listdir / "debian.sources").write_text(
        f"Types: deb\nURIs: {MIRROR}/\nSuites: trixie\nComponents: main\n")
    (listdir / "0000sources.list").write_text(f"deb {MIRROR} trixie main\n")
    (listdir / "vendor.list").write_text("deb http://vendor.example/apt stable main\n")
    (listdir / "keep-dir").mkdir()
    cf.configure_apt(apt_plan(plan_of), root)
    assert sorted(p.name for p in listdir.iterdir()) == ["keep-dir", "vendor.list"]


def test_configure_apt_same_mirror_keeps_sources_d(plan_of: PlanOf, root: Path) -> None:
    listdir = root / "etc/apt/sources.list.d"
    (listdir / "debian.sources").write_text(f"URIs: {MIRROR}\n")
    plan = plan_of("--tarball", TARBALL, "--configure-apt")
    cf.configure_apt(plan, root)
    assert (listdir / "debian.sources").exists()
    assert plan.mirror.rstrip("/") in (root / "etc/apt/sources.list").read_text()
    assert "debian/ " not in (root / "etc/apt/sources.list").read_text()


def test_configure_apt_does_nothing_without_the_option(plan_of: PlanOf, root: Path) -> None:
    listdir = root / "etc/apt/sources.list.d"
    (listdir / "debian.sources").write_text(f"URIs: {MIRROR}\n")
    cf.configure_apt(plan_of("--tarball", TARBALL), root)
    assert not (root / "etc/apt/sources.list").exists()
    assert (listdir / "debian.sources").exists()


# --- networking ------------------------------------------------------------------------


def wants(root: Path, target: str) -> dict[str, str]:
    d = root / "etc/systemd/system" / f"{target}.wants"
    if not d.is_dir():
        return {}
    return {p.name: os.readlink(p) for p in d.iterdir()}


def test_configure_network_networkd(plan_of: PlanOf, root: Path) -> None:
    units(root, "systemd-networkd.service", "systemd-resolved.service")
    cf.configure_network(plan_of("--tarball", TARBALL, "--enable-dhcp"), root)
    network = root / "etc/systemd/network/80-vmdebootstrap-dhcp.network"
    assert "DHCP=yes" in network.read_text()
    assert "Name=en* eth*" in network.read_text()
    assert wants(root, "multi-user.target") == {
        "systemd-networkd.service": "/usr/lib/systemd/system/systemd-networkd.service",
        "systemd-resolved.service": "/usr/lib/systemd/system/systemd-resolved.service",
    }
    assert not (root / "etc/network/interfaces.d").exists()
    assert not (root / "etc/systemd/network/99-default.link").is_symlink()


def test_configure_network_networkd_without_resolved(plan_of: PlanOf, root: Path) -> None:
    (root / "lib/systemd/system").mkdir(parents=True)
    (root / "lib/systemd/system/systemd-networkd.service").write_text("[Unit]\n")
    cf.configure_network(plan_of("--tarball", TARBALL, "--enable-dhcp"), root)
    assert wants(root, "multi-user.target") == {
        "systemd-networkd.service": "/lib/systemd/system/systemd-networkd.service"}
    # Running twice (a rebuilt root) keeps the link.
    cf.configure_network(plan_of("--tarball", TARBALL, "--enable-dhcp"), root)
    assert len(wants(root, "multi-user.target")) == 1


def test_configure_network_missing_unit_is_not_linked(plan_of: PlanOf, root: Path) -> None:
    cf.configure_network(plan_of("--tarball", TARBALL, "--enable-dhcp"), root)
    assert (root / "etc/systemd/network/80-vmdebootstrap-dhcp.network").exists()
    assert wants(root, "multi-user.target") == {}


def test_configure_network_ifupdown(plan_of: PlanOf, root: Path) -> None:
    units(root, "systemd-networkd.service")
    plan = plan_of("--tarball", TARBALL, "--enable-dhcp", "--no-systemd-networkd")
    cf.configure_network(plan, root)
    setup = (root / "etc/network/interfaces.d/setup").read_text()
    assert "iface eth0 inet dhcp" in setup and "allow-hotplug eth0" in setup
    link = root / "etc/systemd/network/99-default.link"
    assert os.readlink(link) == "/dev/null"
    assert not (root / "etc/systemd/network/80-vmdebootstrap-dhcp.network").exists()
    assert wants(root, "multi-user.target") == {}
    assert cf.needs_initramfs_update(plan)


def test_configure_network_off_without_dhcp(plan_of: PlanOf, root: Path) -> None:
    before = sorted(str(p) for p in root.rglob("*"))
    cf.configure_network(plan_of("--tarball", TARBALL), root)
    assert sorted(str(p) for p in root.rglob("*")) == before


# --- serial console ---------------------------------------------------------------------


def test_serial_console_inittab(plan_of: PlanOf, root: Path) -> None:
    (root / "etc/inittab").write_text("id:2:initdefault:\n")
    cf.configure_serial_console(plan_of("--tarball", TARBALL, "--serial-console"), root)
    assert (root / "etc/inittab").read_text() == (
        "id:2:initdefault:\nS0:23:respawn:/sbin/getty -L ttyS0 115200 vt100\n")
    assert wants(root, "getty.target") == {}


def test_serial_console_systemd(plan_of: PlanOf, root: Path) -> None:
    units(root, "serial-getty@.service")
    cf.configure_serial_console(plan_of("--tarball", TARBALL, "--serial-console"), root)
    assert wants(root, "getty.target") == {
        "serial-getty@ttyS0.service": "/usr/lib/systemd/system/serial-getty@.service"}
    assert not (root / "etc/inittab").exists()


def test_serial_console_arm64_uses_ttyama0(plan_of: PlanOf, root: Path) -> None:
    units(root, "serial-getty@.service")
    plan = plan_of("--tarball", TARBALL, "--arch", "arm64", "--serial-console")
    assert plan.serial_tty == "ttyAMA0"
    cf.configure_serial_console(plan, root)
    assert list(wants(root, "getty.target")) == ["serial-getty@ttyAMA0.service"]


def test_serial_console_arm64_inittab_uses_ttyama0(plan_of: PlanOf, root: Path) -> None:
    (root / "etc/inittab").write_text("id:2:initdefault:\n")
    plan = plan_of("--tarball", TARBALL, "--arch", "arm64", "--serial-console")
    cf.configure_serial_console(plan, root)
    line = (root / "etc/inittab").read_text().splitlines()[-1]
    assert "ttyAMA0" in line and "ttyS0" not in line


def test_serial_console_custom_command(plan_of: PlanOf, root: Path) -> None:
    units(root, "serial-getty@.service")
    plan = plan_of("--tarball", TARBALL, "--serial-console", "--serial-console-command",
                   "/sbin/agetty -L ttyS1 9600 vt100")
    cf.configure_serial_console(plan, root)
    assert list(wants(root, "getty.target")) == ["serial-getty@ttyS1.service"]


def test_serial_console_off(plan_of: PlanOf, root: Path) -> None:
    (root / "etc/inittab").write_text("id:2:initdefault:\n")
    units(root, "serial-getty@.service")
    cf.configure_serial_console(plan_of("--tarball", TARBALL), root)
    assert (root / "etc/inittab").read_text() == "id:2:initdefault:\n"
    assert wants(root, "getty.target") == {}


# --- safe to share ----------------------------------------------------------------------


def ssh_keys(root: Path) -> None:
    for kind in ("rsa", "ecdsa", "ed25519"):
        (root / f"etc/ssh/ssh_host_{kind}_key").write_text("PRIVATE")
        (root / f"etc/ssh/ssh_host_{kind}_key.pub").write_text("public")
    (root / "etc/ssh/sshd_config").write_text("PermitRootLogin no\n")


def test_make_safe_to_share_with_sshd(root: Path) -> None:
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "var/lib/dbus/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    ssh_keys(root)
    (root / "usr/sbin/sshd").write_bytes(b"\x7fELF")
    cf.make_safe_to_share(root)
    machine_id = root / "etc/machine-id"
    assert machine_id.is_file() and not machine_id.is_symlink()
    assert machine_id.read_text() == ""
    assert not (root / "var/lib/dbus/machine-id").exists()
    assert sorted(p.name for p in (root / "etc/ssh").iterdir()) == ["sshd_config"]
    unit = root / "etc/systemd/system/vmdebootstrap-ssh-keygen.service"
    assert "ssh-keygen -A" in unit.read_text()
    assert wants(root, "multi-user.target") == {
        unit.name: "/etc/systemd/system/vmdebootstrap-ssh-keygen.service"}
    cf.make_safe_to_share(root)  # idempotent
    assert len(wants(root, "multi-user.target")) == 1


def test_make_safe_to_share_without_sshd(root: Path) -> None:
    ssh_keys(root)
    cf.make_safe_to_share(root)
    assert sorted(p.name for p in (root / "etc/ssh").iterdir()) == ["sshd_config"]
    assert not (root / "etc/systemd/system/vmdebootstrap-ssh-keygen.service").exists()
    assert wants(root, "multi-user.target") == {}
    assert not (root / "etc/machine-id").exists()  # none before: none made


def test_make_safe_to_share_does_not_write_through_links(root: Path, tmp_path: Path) -> None:
    host_id = tmp_path / "host-machine-id"
    host_id.write_text("host id\n")
    (root / "etc/machine-id").symlink_to(host_id)
    (root / "var/lib/dbus/machine-id").symlink_to("/etc/machine-id")
    cf.make_safe_to_share(root)
    assert host_id.read_text() == "host id\n"
    assert not (root / "etc/machine-id").is_symlink()
    assert (root / "etc/machine-id").read_text() == ""
    assert (root / "var/lib/dbus/machine-id").is_symlink()  # Debian's link is fine


# --- apt clean-up and initramfs -------------------------------------------------------------


def test_clean_apt(root: Path) -> None:
    lists = root / "var/lib/apt/lists"
    (lists / "partial").mkdir(parents=True)
    (lists / "lock").write_text("")
    (lists / "mirror.example_debian_dists_trixie_InRelease").write_text("x")
    (lists / "mirror.example_debian_dists_trixie_main_binary-amd64_Packages").write_text("x")
    archives = root / "var/cache/apt/archives"
    (archives / "partial").mkdir(parents=True)
    (archives / "lock").write_text("")
    (archives / "bash_5.2_amd64.deb").write_bytes(b"!<arch>\n")
    (root / "var/cache/apt/pkgcache.bin").write_bytes(b"x")
    (root / "var/cache/apt/srcpkgcache.bin").write_bytes(b"x")
    cf.clean_apt(root)
    assert sorted(p.name for p in lists.iterdir()) == ["lock", "partial"]
    assert sorted(p.name for p in archives.iterdir()) == ["lock", "partial"]
    assert sorted(p.name for p in (root / "var/cache/apt").iterdir()) == ["archives"]


def test_clean_apt_on_an_empty_root(tmp_path: Path) -> None:
    cf.clean_apt(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_update_initramfs(plan_of: PlanOf, root: Path) -> None:
    runner = RecordingRunner()
    plan = plan_of("--tarball", TARBALL)
    cf.update_initramfs(plan, runner, root)
    assert runner.calls == []  # no update-initramfs in the root
    (root / "usr/sbin/update-initramfs").write_text("#!/bin/sh\n")
    cf.update_initramfs(plan, runner, root)
    assert runner.calls == [["chroot", str(root), "update-initramfs", "-u", "-k", "all"]]
    for extra in (("--no-update-initramfs",), ("--no-kernel",)):
        skipped = RecordingRunner()
        cf.update_initramfs(plan_of("--tarball", TARBALL, *extra), skipped, root)
        assert skipped.calls == []
