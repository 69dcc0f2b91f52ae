"""Turn Settings plus facts about the host into a Plan, or refuse.

Every option is checked here, before anything is written; all problems are
reported together, each naming the option and what to do instead.  One
module checks each concern (outputs, target, mirrors, bootstrap, packages,
system, disk, iso, boot, and the options the output ignores); make_plan runs
them all, then assembles the Plan.
"""

from __future__ import annotations

# shutil is the module tests patch (plan.shutil.which) to say what is installed.
import shutil  # noqa: F401

from vmdebootstrap.host import apt_sources
from vmdebootstrap.intent.plan import Plan
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan.boot import boot_login_of, check_boot_test
from vmdebootstrap.plan.bootstrap import (
    DEBOOTSTRAP_OPTS,
    MMDEBSTRAP_VARIANTS,
    check_bootstrap,
    check_cache,
    parse_debootstrapopts,
)
from vmdebootstrap.plan.disk import UEFI_ARCHES, check_bootloader, check_disk, image_spec_of
from vmdebootstrap.plan.facts import Host
from vmdebootstrap.plan.findings import Findings
from vmdebootstrap.plan.ignored import check_ignored
from vmdebootstrap.plan.iso import ISO_ARCHES, check_iso, iso_of, iso_spec_of
from vmdebootstrap.plan.mirrors import check_mirrors, check_signatures
from vmdebootstrap.plan.outputs import (
    COMPRESSION_LEVELS,
    COMPRESSORS,
    TARBALL_SUFFIXES,
    check_outputs,
    log_file_of,
    targets_of,
)
from vmdebootstrap.plan.packages import KERNELS, PACKAGE_RE, check_packages
from vmdebootstrap.plan.system import (
    HOSTNAME_RE,
    check_system,
    serial_getty_of,
    serial_tty_of,
    system_of,
)
from vmdebootstrap.plan.target import check_target

__all__ = [
    "COMPRESSION_LEVELS", "COMPRESSORS", "DEBOOTSTRAP_OPTS", "HOSTNAME_RE", "ISO_ARCHES",
    "KERNELS", "MMDEBSTRAP_VARIANTS", "PACKAGE_RE", "TARBALL_SUFFIXES", "UEFI_ARCHES",
    "Host", "Plan", "boot_login_of", "iso_spec_of", "make_plan", "parse_debootstrapopts",
    "serial_getty_of", "serial_tty_of", "targets_of",
]


def make_plan(s: Settings, host: Host | None = None) -> Plan:
    """The Plan for these settings on this host; a UsageError lists every problem."""
    host = host or Host()
    found = Findings()
    output = check_outputs(s, host, found)
    target = check_target(s, host, found)
    s = check_bootloader(s, target.arch, output, found)
    mirror = check_mirrors(s, host, found)
    bootstrap = check_bootstrap(s, found)
    cache_dir = check_cache(s, host.cache_dir, found)
    check_signed = check_signatures(s, bootstrap.options, found)
    packages = check_packages(s, target, output, bootstrap.variant, found)
    users, hook = check_system(s, host, found)
    check_disk(s, target, output, bootstrap.variant, found)
    check_iso(s, target, mirror, output, found)
    check_boot_test(s, output, found, target=target)
    check_ignored(s, output, found)
    found.refuse_if_any()

    return Plan(
        settings=s, output=output, arch=target.arch, distribution=target.codename,
        mirror=mirror, apt_mirror=s.apt_mirror or mirror, components=bootstrap.components,
        variant=bootstrap.variant, bootstrap_tool=bootstrap.tool,
        bootstrap_opts=bootstrap.opts, packages=packages.names,
        kernel_package=packages.kernel, custom_debs=packages.debs, foreign=target.foreign,
        targets=targets_of(s, output), system=system_of(s, target.arch, users, hook),
        check_signatures=check_signed,
        snapshot=s.snapshot or apt_sources.is_snapshot_url(mirror),
        cache_dir=cache_dir, refresh_cache=s.refresh_cache,
        image=image_spec_of(s, target.arch, output, target.codename),
        iso=iso_of(s, target, mirror, output, components=bootstrap.components,
                   keyring=bootstrap.options.get("keyring"), check_signatures=check_signed),
        boot_test=s.boot_test, reproducible=s.reproducible,
        boot_login=boot_login_of(s) if s.boot_test else None,
        user_secrets=s.user, root_secret=s.root_password, log_file=log_file_of(s),
        notes=tuple(found.notes),
    )
