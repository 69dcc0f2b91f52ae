"""--boot-test: which outputs can be booted, and who logs in."""

from __future__ import annotations

from vmdebootstrap.intent.plan import Login
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.outputs.kinds import KINDS
from vmdebootstrap.plan.findings import Findings


def check_boot_test(s: Settings, output: str, found: Findings) -> None:
    if not s.boot_test:
        return
    kind = KINDS.get(output)
    if output != "none" and not (kind and kind.bootable):  # "none": no output is said
        found.problems.append("--boot-test needs a bootable output: --iso or --image")
    if not s.serial_console:
        found.problems.append("--boot-test logs in on the serial console: add --serial-console")


def boot_login_of(s: Settings) -> Login | None:
    """The first user with a password, else root with its password."""
    for value in s.user:
        name, _, password = value.partition("/")
        if password:
            return Login(name, password)
    if s.root_password:
        return Login("root", s.root_password)
    return None
