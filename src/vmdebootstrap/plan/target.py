"""What is built: the architecture, the distribution, and how a foreign
architecture's binaries run on this host (qemu-user through binfmt_misc)."""

from __future__ import annotations

from dataclasses import dataclass

from vmdebootstrap.host import binfmt, distro
from vmdebootstrap.intent.options import close_match
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan.facts import Host
from vmdebootstrap.plan.findings import Findings


@dataclass(frozen=True)
class Target:
    arch: str
    codename: str  # resolved; "" when the distribution is unknown
    native: bool  # the host runs the architecture's binaries itself
    foreign: binfmt.ForeignSetup | None = None  # how to run them otherwise

    @property
    def known_arch(self) -> bool:
        return self.arch in binfmt.VALID_ARCHES


def check_target(s: Settings, host: Host, found: Findings) -> Target:
    arch = check_arch(s, host, found)
    return Target(arch=arch, codename=check_distribution(s, host, found),
                  native=arch in binfmt.native_arches(host.arch),
                  foreign=check_foreign(s, arch, host, found))


def check_arch(s: Settings, host: Host, found: Findings) -> str:
    arch = s.arch or host.arch
    if arch not in binfmt.VALID_ARCHES:
        close = close_match(arch, binfmt.VALID_ARCHES)
        found.problems.append(f"--arch: unknown architecture {arch!r}; " + (
            f"did you mean {close}?" if close
            else f"known: {', '.join(sorted(binfmt.VALID_ARCHES))}"))
    return arch


def check_distribution(s: Settings, host: Host, found: Findings) -> str:
    """The codename --distribution names today ("" when it names none)."""
    codename = ""
    with found.caught():
        codename = distro.resolve(s.distribution or "stable", host.today)
    return codename


def check_foreign(s: Settings, arch: str, host: Host,
                  found: Findings) -> binfmt.ForeignSetup | None:
    if arch not in binfmt.VALID_ARCHES:
        return None  # check_arch said so
    foreign = None
    with found.caught():
        foreign = binfmt.check_foreign(arch, host.arch, s.foreign, host.binfmt_dir)
    if s.foreign and arch in binfmt.native_arches(host.arch):
        found.notes.append(f"--foreign is ignored: {arch} runs natively on this "
                           f"{host.arch} host")
    return foreign
