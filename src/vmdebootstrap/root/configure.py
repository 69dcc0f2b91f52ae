"""Configure the bootstrapped root: host name, accounts, apt, networking.

Password hashes are written straight into /etc/shadow from Python, so no
secret is ever on a command line.  Other steps run the image's own tools in
a chroot (through qemu-user for a foreign architecture).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vmdebootstrap.host.chroot import chroot_argv, chroot_env
from vmdebootstrap.host.run import Runner
from vmdebootstrap.intent.plan import Plan
from vmdebootstrap.root import initramfs

log = logging.getLogger("vmdebootstrap")


HOSTS = """127.0.0.1\tlocalhost
127.0.1.1\t{name}

::1\tlocalhost ip6-localhost ip6-loopback
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""

NETWORKD_DHCP = """[Match]
Name=en* eth*

[Network]
DHCP=yes
"""

IFUPDOWN_DHCP = """auto lo
iface lo inet loopback

allow-hotplug eth0
iface eth0 inet dhcp
"""

SSH_KEYGEN_UNIT = """[Unit]
Description=Generate SSH host keys on first boot
Before=ssh.service
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""


def write_config(path: Path, text: str, mode: int = 0o644) -> None:
    """A file of ours in the image, with the mode Debian gives such files
    whatever the one it replaces had (mmdebstrap copies the host's)."""
    path.write_text(text)
    path.chmod(mode)


def has_systemd(root: Path) -> bool:
    return any((root / d / "systemd/systemd").exists() for d in ("usr/lib", "lib"))


def set_hostname(plan: Plan, root: Path) -> None:
    name = plan.system.hostname
    write_config(root / "etc/hostname", name + "\n")
    # sudo resolves the host name on every call; without this line it
    # prints "unable to resolve host" (the live-image guide's complaint).
    write_config(root / "etc/hosts", HOSTS.format(name=name))


def _edit_shadow(root: Path, name: str, password: str | None = None,
                 lock: bool = False, expire: bool = False) -> None:
    path = root / "etc/shadow"
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] != name:
            continue
        if password is not None:
            fields[1] = password
        if lock and not fields[1].startswith("!"):
            fields[1] = "!" + fields[1]
        if expire:
            fields[2] = "0"  # last change at the epoch: must change at next login
        lines[i] = ":".join(fields)
        break
    else:
        raise ValueError(f"no entry for {name} in {path}")
    tmp = path.with_name(".shadow.vmdebootstrap")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    st = path.stat()
    os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, st.st_mode & 0o7777)
    os.replace(tmp, path)


def configure_accounts(plan: Plan, runner: Runner, root: Path) -> None:
    system = plan.system
    if system.root_password_hash:
        _edit_shadow(root, "root", password=system.root_password_hash)
    if system.lock_root:
        _edit_shadow(root, "root", lock=True)
    for user in system.users:
        runner.run(chroot_argv(root, ["useradd", "--create-home", "--shell", "/bin/bash",
                                      user.name]), env=chroot_env(),
                   what=f"creating user {user.name} failed")
        if user.password_hash is None:
            _edit_shadow(root, user.name, password="", expire=True)
        else:
            _edit_shadow(root, user.name, password=user.password_hash)
        if system.sudo:
            runner.run(chroot_argv(root, ["usermod", "-a", "-G", "sudo", user.name]),
                       env=chroot_env(),
                       what=f"adding {user.name} to the sudo group failed")


def configure_apt(plan: Plan, root: Path) -> None:
    """The image's own apt source: --apt-mirror (or --mirror), no build mirror."""
    if not plan.system.configure_apt:
        return
    mirror = plan.apt_mirror.rstrip("/")
    comps = " ".join(plan.components)
    lines = [f"deb {mirror} {plan.distribution} {comps}"]
    if plan.distribution not in ("sid", "experimental"):
        lines.append(f"deb {mirror} {plan.distribution}-updates {comps}")
    write_config(root / "etc/apt/sources.list", "\n".join(lines) + "\n")
    build = plan.mirror.rstrip("/")
    listdir = root / "etc/apt/sources.list.d"
    if listdir.is_dir() and build != mirror:
        for f in listdir.iterdir():
            if f.is_file() and build in f.read_text(errors="replace"):
                log.info("removing build mirror source %s from the image", f.name)
                f.unlink()


def _unit_file(root: Path, unit: str) -> str | None:
    """Where the image has ``unit`` (or its template), as a path in the image."""
    template = unit.split("@")[0] + "@.service" if "@" in unit else unit
    for libdir in ("usr/lib/systemd/system", "lib/systemd/system"):
        if (root / libdir / template).exists():
            return f"/{libdir}/{template}"
    return None


def _enable_unit(root: Path, unit: str, target: str) -> None:
    path = _unit_file(root, unit)
    if path is None:
        log.warning("cannot enable %s: the unit is not installed in the image", unit)
        return
    wants = root / "etc/systemd/system" / f"{target}.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / unit
    if not link.is_symlink():
        link.symlink_to(path)


def configure_network(plan: Plan, root: Path) -> None:
    if plan.system.dhcp is None:
        return
    if plan.system.dhcp == "networkd":
        netdir = root / "etc/systemd/network"
        netdir.mkdir(parents=True, exist_ok=True)
        write_config(netdir / "80-vmdebootstrap-dhcp.network", NETWORKD_DHCP)
        _enable_unit(root, "systemd-networkd.service", "multi-user.target")
        if _unit_file(root, "systemd-resolved.service"):
            _enable_unit(root, "systemd-resolved.service", "multi-user.target")
    else:
        ifdir = root / "etc/network/interfaces.d"
        ifdir.mkdir(parents=True, exist_ok=True)
        write_config(ifdir / "setup", IFUPDOWN_DHCP)
        # ifupdown names eth0; turn predictable interface names off (this is
        # copied into the initramfs, hence the initramfs update it needs).
        link = root / "etc/systemd/network/99-default.link"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to("/dev/null")


def configure_serial_console(plan: Plan, root: Path) -> None:
    tty, command = plan.system.serial_tty, plan.system.serial_getty
    if tty is None or command is None:
        return
    inittab = root / "etc/inittab"
    if inittab.exists():
        with inittab.open("a") as fh:
            fh.write(f"S0:23:respawn:{command}\n")
    else:
        _enable_unit(root, f"serial-getty@{tty}.service", "getty.target")


def make_safe_to_share(root: Path) -> None:
    """No per-machine identity or build leftovers in an image handed out."""
    machine_id = root / "etc/machine-id"
    if machine_id.exists() or machine_id.is_symlink() or has_systemd(root):
        machine_id.unlink(missing_ok=True)
        # Empty, as systemd ships it: filled in at first boot, and the
        # first boot is detected from it.
        write_config(machine_id, "", mode=0o444)
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.is_file() and not dbus_id.is_symlink():
        dbus_id.unlink()
    keys = sorted((root / "etc/ssh").glob("ssh_host_*")) if (root / "etc/ssh").is_dir() else []
    for key in keys:
        key.unlink()
    if (root / "usr/sbin/sshd").exists():
        unit = root / "etc/systemd/system/vmdebootstrap-ssh-keygen.service"
        write_config(unit, SSH_KEYGEN_UNIT)
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / unit.name
        if not link.is_symlink():
            link.symlink_to(f"/etc/systemd/system/{unit.name}")


# Written during the build, different every time, and of no use in an image.
BUILD_LEFTOVERS = (
    "var/log/dpkg.log", "var/log/alternatives.log", "var/log/bootstrap.log",
    "var/log/apt/history.log", "var/log/apt/term.log", "var/log/apt/eipp.log.xz",
    "var/cache/ldconfig/aux-cache", "var/lib/dpkg/status-old", "var/lib/dpkg/diversions-old",
    "var/lib/dpkg/statoverride-old", "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old", "var/cache/debconf/passwords.dat-old",
    "etc/passwd-", "etc/group-", "etc/shadow-", "etc/gshadow-", "etc/subuid-", "etc/subgid-",
)


def remove_build_leftovers(root: Path) -> None:
    for rel in BUILD_LEFTOVERS:
        (root / rel).unlink(missing_ok=True)


def clean_apt(root: Path) -> None:
    """Package lists and downloaded .debs do not belong in an output."""
    lists = root / "var/lib/apt/lists"
    if lists.is_dir():
        for f in lists.iterdir():
            if f.is_file() and f.name != "lock":
                f.unlink()
    archives = root / "var/cache/apt/archives"
    if archives.is_dir():
        for f in archives.glob("*.deb"):
            f.unlink()
    for f in (root / "var/cache/apt").glob("*.bin"):
        f.unlink()


def update_initramfs(plan: Plan, runner: Runner, root: Path) -> None:
    if not plan.system.update_initramfs or plan.kernel_package is None:
        return
    if not (root / "usr/sbin/update-initramfs").exists():
        return
    initramfs.update(plan, runner, root, ["-u", "-k", "all"])


def needs_initramfs_update(plan: Plan) -> bool:
    return plan.system.dhcp == "ifupdown" or plan.output == "image"


