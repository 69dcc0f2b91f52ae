"""Whether this user's build can run without root, before anything is written."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmdebootstrap.errors import UsageError
from vmdebootstrap.host.userns import IdMap, as_namespace_root, id_map

if TYPE_CHECKING:
    from vmdebootstrap.intent.plan import Plan

__all__ = ["as_namespace_root", "id_map_for", "output_problems", "problems", "with_sbin"]

ROOT_ONLY = {
    "image": ("--image needs root: it attaches the image to a loop device and mounts "
              "its filesystems; run it as root (or with sudo), or build --tarball, "
              "--squash or --iso, which work without root"),
}


SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def with_sbin(path: str) -> str:
    """A user's PATH with the sbin directories a root build runs tools from
    (mkfs.vfat, chroot, debootstrap): the build runs as root of its namespace."""
    dirs = [d for d in path.split(":") if d]
    return ":".join([*dirs, *(d for d in SBIN if d not in dirs)])


def output_problems(plan: Plan) -> list[str]:
    """What this plan asks that only root can do."""
    problems = []
    if plan.output in ROOT_ONLY:
        problems.append(ROOT_ONLY[plan.output])
    if plan.targets.owner:
        problems.append(
            f"--owner {plan.targets.owner}: only root can give files away; the outputs of "
            "a build without root belong to the user who runs it: leave out --owner")
    if plan.targets.layered:
        problems.append(
            "--layered needs root: an overlay mounted without root records opaque "
            "directories in user.overlay.* attributes, which live-boot's overlay at boot "
            "does not read, so the layer would not show what the hook did; build "
            "without --layered, or as root")
    return problems


def problems(plan: Plan) -> list[str]:
    """Why this user cannot build ``plan``, each with its fix."""
    return output_problems(plan) + id_map()[1]


def id_map_for(plan: Plan) -> IdMap:
    """The id map for a build without root, or a UsageError naming each fix."""
    ids, host_problems = id_map()
    found = output_problems(plan) + host_problems
    if found or ids is None:
        raise UsageError(["vmdebootstrap runs without root inside a user namespace, "
                          "and this build cannot:", *(f"  {p}" for p in found)])
    return ids
