"""The root's apt while the customisation hook runs.

1.x hooks install packages with a plain ``chroot "$rootdir" apt-get install``
(1.x's own hooks do).  That needs sources the build host can reach and fresh
package lists, while the image must ship its own sources (--apt-mirror with
--configure-apt) and no lists.  So for the hook's run the image's sources are
set aside, the build mirror is put in their place and ``apt-get update`` runs;
afterwards the image's sources are back and the lists gone.  Sources the hook
adds under sources.list.d stay: a hook may add a repository for the image.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from vmdebootstrap.host.apt_sources import source_options
from vmdebootstrap.host.chroot import chroot_argv, chroot_env, chroot_mounts
from vmdebootstrap.host.overlay import move
from vmdebootstrap.host.run import Runner
from vmdebootstrap.intent.plan import Plan
from vmdebootstrap.root.bootstrap import APT_QUIET
from vmdebootstrap.root.hook import clear_apt_lists

log = logging.getLogger("vmdebootstrap")

ASIDE = "etc/apt/vmdebootstrap-image-sources"


def build_source_line(plan: Plan) -> str:
    options = source_options(check_signatures=plan.check_signatures, snapshot=plan.snapshot)
    return (f"deb {options}{plan.mirror.rstrip('/')} {plan.distribution} "
            f"{' '.join(plan.components)}\n")


@contextlib.contextmanager
def build_sources(plan: Plan, runner: Runner, root: Path) -> Iterator[None]:
    if plan.mirror.startswith("file:"):
        # The host's path is not inside the root: nothing there could read it.
        log.info("the hook's apt is not set up: the mirror %s is a local path", plan.mirror)
        yield
        return
    apt, aside = root / "etc/apt", root / ASIDE
    aside.mkdir(parents=True)
    try:
        for name in ("sources.list", "sources.list.d"):
            if (apt / name).exists() or (apt / name).is_symlink():
                move(apt / name, aside / name)
        (apt / "sources.list.d").mkdir()
        (apt / "sources.list").write_text(build_source_line(plan))
        with chroot_mounts(runner, root):
            # No translations: mmdebstrap fetched none, so the lists it left
            # are current and nothing is downloaded again.
            runner.run(chroot_argv(root, ["apt-get", *APT_QUIET, "-o", "Acquire::Languages=none",
                                          "update"]),
                       env=chroot_env({"DEBIAN_FRONTEND": "noninteractive"}), label="apt",
                       what="apt-get update for the customisation hook failed")
        yield
    finally:
        put_back(root)


def put_back(root: Path) -> None:
    """The image's own sources, and no package lists of the build mirror."""
    apt, aside = root / "etc/apt", root / ASIDE
    (apt / "sources.list").unlink(missing_ok=True)
    if (aside / "sources.list").exists() or (aside / "sources.list").is_symlink():
        os.replace(aside / "sources.list", apt / "sources.list")
    saved_d = aside / "sources.list.d"
    if saved_d.is_dir():
        (apt / "sources.list.d").mkdir(exist_ok=True)
        for entry in saved_d.iterdir():
            os.replace(entry, apt / "sources.list.d" / entry.name)
        saved_d.rmdir()
    if aside.is_dir():
        aside.rmdir()
    clear_apt_lists(root)
