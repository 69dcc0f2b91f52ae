"""How the system in the root is configured: host name, users and the root
password, sudo, the network, the serial console and the customisation hook."""

from __future__ import annotations

import os
import re
from pathlib import Path

from vmdebootstrap.errors import UsageError
from vmdebootstrap.host.passwords import UserSpec, hash_password, parse_user
from vmdebootstrap.intent.options import BY_NAME
from vmdebootstrap.intent.plan import System, default_serial_tty
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan.facts import Host
from vmdebootstrap.plan.findings import Findings
from vmdebootstrap.root.hook import find_hook

HOSTNAME_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


def check_system(s: Settings, host: Host,
                 found: Findings) -> tuple[tuple[UserSpec, ...], Path | None]:
    """The users (passwords hashed) and the hook, once checked."""
    if not HOSTNAME_RE.fullmatch(s.hostname):
        found.problems.append(f"--hostname: {s.hostname!r} is not a valid host name "
                              "(letters, digits and '-', dot-separated labels)")
    if s.root_password is not None and s.lock_root_password:
        found.problems.append("--root-password and --lock-root-password contradict each "
                              "other: give one")
    users = check_users(s, found)
    if not s.systemd_networkd and s.no_update_initramfs:
        found.problems.append("--no-systemd-networkd requires updating the initramfs, so it "
                              "cannot be combined with --no-update-initramfs")
    return users, check_hook(s, host, found)


def check_users(s: Settings, found: Findings) -> tuple[UserSpec, ...]:
    users: list[UserSpec] = []
    for value in s.user:
        with found.caught():
            users.append(parse_user(value))
    if len({u.name for u in users}) != len(users):
        found.problems.append("--user: the same user is given twice")
    if s.sudo and not users:
        found.notes.append("--sudo without --user: sudo is installed, nobody is added to it")
    return tuple(users)


def check_hook(s: Settings, host: Host, found: Findings) -> Path | None:
    """--customize, found relative to the config files or the current directory."""
    if not s.customize:
        return None
    dirs = [Path(c).resolve().parent for c in s.config_files]
    try:
        return find_hook(s.customize, dirs, host.cwd)
    except UsageError as exc:
        found.problems.extend(_hook_problems(s.customize, exc.problems, dirs, host.cwd))
    return None


def _hook_problems(script: str, problems: list[str], dirs: list[Path],
                   cwd: Path) -> list[str]:
    """find_hook's problems, made plainer: a directory given for the hook
    is said to be one, and a script that is neither executable nor starts
    with #! gets both said at once (not one fix at a time)."""
    said = []
    for problem in problems:
        named, sep, _rest = problem.removeprefix("--customize: ").partition(
            " is not executable (chmod +x ")
        if " not found (looked in " in problem:
            folder = next((d / script for d in (cwd, *dirs) if (d / script).is_dir()), None)
            if folder is not None:
                problem = (f"--customize: {folder} is a directory; give the path of the hook "
                           f"script{_example(folder, script)}")
        elif sep and not _starts_with_shebang(Path(named)):
            problem = (f"--customize: {named} is not executable and has no #! line: start "
                       f"it with one (e.g. #!/bin/sh), then chmod +x {named}")
        said.append(problem)
    return said


def _example(folder: Path, script: str) -> str:
    """' (e.g. DIR/hook.sh)' for an executable file in the directory given."""
    try:
        scripts = sorted(p.name for p in folder.iterdir()
                         if p.is_file() and os.access(p, os.X_OK))
    except OSError:
        return ""
    return f" in it (e.g. {Path(script) / scripts[0]})" if scripts else " in it"


def _starts_with_shebang(path: Path) -> bool:
    """Whether the script starts with #! (or is a program); True when it
    cannot be read, which find_hook says otherwise."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return True
    return head.startswith(b"#!") or head == b"\x7fELF"


def serial_tty_of(s: Settings, arch: str) -> str:
    """The tty named in --serial-console-command, else the architecture's
    first serial port (1.x's default command names ttyS0 everywhere)."""
    m = re.search(r"\btty\w+", s.serial_console_command or "")
    default = default_serial_tty(arch)
    if m and not (m.group(0) == "ttyS0" and default != "ttyS0"):
        return m.group(0)
    return default


def serial_getty_of(s: Settings, arch: str) -> str:
    """1.x's default getty command, on the architecture's serial port."""
    command = s.serial_console_command
    if command == BY_NAME["serial-console-command"].default:
        command = command.replace("ttyS0", serial_tty_of(s, arch))
    return command


def system_of(s: Settings, arch: str, users: tuple[UserSpec, ...],
              hook: Path | None) -> System:
    """The System to configure; hashes the root password (so: once checked)."""
    root_hash = hash_password(s.root_password) if s.root_password is not None else None
    return System(
        hostname=s.hostname, users=users, root_password_hash=root_hash,
        lock_root=s.lock_root_password, sudo=s.sudo,
        dhcp=("networkd" if s.systemd_networkd else "ifupdown") if s.enable_dhcp else None,
        configure_apt=s.configure_apt,
        serial_tty=serial_tty_of(s, arch) if s.serial_console else None,
        serial_getty=serial_getty_of(s, arch) if s.serial_console else None,
        update_initramfs=not s.no_update_initramfs, hook=hook, hook_timeout=s.hook_timeout)
