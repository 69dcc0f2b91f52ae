"""The output model: one class per output kind, the one list of kinds.

An output kind owns its final paths, its own option checks, how it is
written from a finished root, and the check its staged file must pass
before it is renamed into place (vmdebootstrap.host.publish), with its
checksum file: NAME.sha256 beside a tarball or an ISO, SHA256SUMS inside
a squash directory, published with the output or not at all.  The command
line, planning, the build and error diagnosis ask KINDS; nothing else lists
the kinds.  A disk image differs from the rest: the root is built inside
it, so the build drives it (vmdebootstrap.outputs.image) instead of write().
"""

from __future__ import annotations

import contextlib
import os
import pwd
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap import __version__
from vmdebootstrap.host.digest import Digests
from vmdebootstrap.host.publish import SUMS_NAME, checksum_path, staged_dir, staged_file
from vmdebootstrap.host.run import Runner
from vmdebootstrap.intent.options import OUTPUT_KINDS
from vmdebootstrap.intent.plan import Plan
from vmdebootstrap.outputs import files, iso, layered, manifest, sbom
from vmdebootstrap.root.inventory import InstalledPackage


@dataclass(frozen=True)
class Job:
    """What writing an output needs: the plan, the runner, the finished
    root, and the build's work directory for scratch files."""

    plan: Plan
    runner: Runner
    root: Path
    work: Path
    # The build's manifest without the files it writes (outputs.manifest);
    # None writes none (unit tests of other parts).
    recipe: Mapping[str, object] | None = None
    packages: tuple[InstalledPackage, ...] = ()  # for the SBOM (outputs.sbom)
    layers: layered.Layers | None = None  # --layered: squash these instead of the root

    def squasher(self) -> Callable[[Path], None] | None:
        """What writes a live output's squashfs images, if not the default."""
        if self.layers is None:
            return None
        layers, plan = self.layers, self.plan
        return lambda dest: layered.write_layers(self.runner, layers, dest,
                                                 plan.targets.compression, plan.epoch)


# The suffixes that compress a --tarball, as 1.x's tar -a (--auto-compress)
# read them (files.tar_argv picks the program).  Any other name, .tar among
# them, is a plain tar.
TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".taz", ".gz", ".tar.xz", ".txz", ".xz", ".tar.zst",
                    ".tzst", ".zst", ".tar.bz2", ".tbz", ".tbz2", ".tz2", ".bz2", ".tar.lzma",
                    ".tlz", ".lzma")


class OutputKind:
    name: str = ""
    live = False  # a live system: live-boot in the root, kernel and initrd copied out
    bootable = False  # the boot test can boot it
    holds_root = False  # the root is built inside the output itself
    directory = False  # the output is a directory

    def problems(self, path: str) -> list[str]:
        """What is wrong with the path given to --NAME, before the build."""
        final = Path(path)
        if self.directory:
            if final.exists() and not final.is_dir():
                return [f"--{self.name}: {path} exists and is not a directory"]
        elif final.is_dir():
            return [f"--{self.name}: {path} is a directory: give a file name"]
        elif final.exists() and not final.is_file():
            return [f"--{self.name}: {path} exists and is not a regular file; "
                    "vmdebootstrap only writes regular files"]
        sums = final / SUMS_NAME if self.directory else checksum_path(final)
        if sums.exists() and not sums.is_file():
            return [f"--{self.name}: {sums} (its checksum file) exists and is not a regular "
                    "file; move it away"]
        return []

    def write(self, job: Job) -> list[Path]:
        """Write the output from job.root; return what was published."""
        raise NotImplementedError(f"--{self.name} is not written from a finished root")


class Tarball(OutputKind):
    name = "tarball"

    def write(self, job: Job) -> list[Path]:
        targets, runner = job.plan.targets, job.runner
        final = targets.path
        doc = root_manifest(job, job.root)
        with staged_file(final, check=lambda p: files.check_tarball(runner, p, final.name),
                         checksum=True) as tmp:
            files.write_tarball(runner, job.root, tmp, final.name, job.plan.epoch)
        return [final, checksum_path(final), *publish_beside(job, doc, final),
                *write_pkglist(job)]


class Squash(OutputKind):
    name = "squash"
    live = True
    directory = True

    def write(self, job: Job) -> list[Path]:
        final, kernel = job.plan.targets.path, job.plan.kernel_package is not None
        digests = Digests()
        with staged_dir(final, check=lambda d: files.check_squash_dir(job.runner, d, kernel),
                        checksums=True, digests=digests) as stage:
            files.write_squash_dir(job.runner, job.root, stage, job.plan.targets.compression,
                                   kernel, job.squasher())
            doc = squash_manifest(job, stage, digests)
        return [final, *publish_beside(job, doc, final)]


class Iso(OutputKind):
    name = "iso"
    live = True
    bootable = True

    def write(self, job: Job) -> list[Path]:
        plan, runner = job.plan, job.runner
        spec = plan.iso
        assert spec is not None
        final, kept = plan.targets.path, plan.targets.squash_dir
        # The squash files are hashed once, for the ISO's sha256sum.txt and
        # a kept squash directory's SHA256SUMS both.
        digests = Digests()
        with contextlib.ExitStack() as stack:
            if kept is not None:
                # The user keeps the squash directory too; it appears only if
                # the ISO made from it does (the inner publish goes first).
                squash_dir = stack.enter_context(
                    staged_dir(kept, check=lambda d: files.check_squash_dir(runner, d),
                               checksums=True, digests=digests))
            else:
                squash_dir = job.work / "live"
                squash_dir.mkdir()
            files.write_squash_dir(runner, job.root, squash_dir, plan.targets.compression,
                                   squash=job.squasher())
            doc = squash_manifest(job, squash_dir, digests)
            iso.check_room_for_iso(squash_dir, final)
            scratch = job.work / "iso"
            scratch.mkdir()
            with staged_file(final, check=lambda p: iso.check_iso(runner, p, plan.arch),
                             checksum=True) as tmp:
                iso.build_iso(runner, spec, squash_dir, tmp, scratch, digests)
        return [final, checksum_path(final), *publish_beside(job, doc, final),
                *([kept, *publish_beside(job, doc, kept)] if kept else []),
                *write_pkglist(job)]


class Image(OutputKind):
    name = "image"
    bootable = True
    holds_root = True

    def problems(self, path: str) -> list[str]:
        final = Path(path)
        if final.exists() and not final.is_file():
            return [f"--image: {path} exists and is not a regular file; "
                    "vmdebootstrap only writes image files"]
        return super().problems(path)


def write_pkglist(job: Job) -> list[Path]:
    dest = job.plan.targets.pkglist
    if dest is None:
        return []
    return publish_pkglist(dest, files.package_list(job.runner, job.root))


def publish_pkglist(dest: Path | None, listing: str) -> list[Path]:
    """--pkglist: the installed packages, beside the output."""
    if dest is None:
        return []
    with staged_file(dest) as tmp:
        tmp.write_text(listing)
    return [dest]


KINDS: Mapping[str, OutputKind] = {k.name: k for k in (Image(), Tarball(), Squash(), Iso())}
assert tuple(KINDS) == OUTPUT_KINDS, "the option table and the output kinds disagree"


def chown_outputs(paths: list[Path], owner: str | None) -> None:
    """--owner: the outputs (their checksum files are listed with them, a
    squash directory's SHA256SUMS is one of its files) to that user."""
    if not owner:
        return
    pw = pwd.getpwnam(owner)
    for path in paths:
        os.chown(path, pw.pw_uid, pw.pw_gid)
        if path.is_dir():
            for child in path.iterdir():
                os.chown(child, pw.pw_uid, pw.pw_gid)



def apply_umask(paths: list[Path], umask: int) -> None:
    """The build runs under umask 022 (see build()); its outputs get the
    modes the caller's own umask would have given them."""
    for path in paths:
        for p in (path, *(path.iterdir() if path.is_dir() else ())):
            mode = p.stat().st_mode & 0o777
            if mode & umask:
                os.chmod(p, mode & ~umask)


def root_manifest(job: Job, root: Path) -> Mapping[str, object] | None:
    """A tarball's or an image's manifest goes into its root."""
    if job.recipe is None:
        return None
    path = manifest.write(root / manifest.IN_ROOT, job.recipe)
    if job.plan.epoch is not None:
        for p in (path, path.parent):
            os.utime(p, (job.plan.epoch,) * 2)
    return job.recipe


def squash_manifest(job: Job, directory: Path,
                    digests: Digests) -> Mapping[str, object] | None:
    """A live output's manifest, with its files' sha256, and the SBOM of
    its squashfs, in the squash directory (an ISO carries that directory's
    files in /live)."""
    if job.recipe is None:
        return None
    doc = manifest.with_files(job.recipe, directory, (*iso.SQUASH_FILES, *layered.FILES),
                              digests)
    manifest.write(directory / manifest.NAME, doc)
    squashfs = directory / "filesystem.squashfs"
    sbom.write_spdx(directory / sbom.SQUASH_SBOM, spdx_of(job, squashfs, digests))
    return doc


def publish_beside(job: Job, doc: Mapping[str, object] | None, output: Path) -> list[Path]:
    """NAME.manifest.json and NAME.spdx.json beside an output, once the
    output is there (a squash directory has its SBOM inside)."""
    if doc is None:
        return []
    digests = Digests()
    writers: list[tuple[Path, Callable[[Path], object]]] = [
        (manifest.beside_path(output),
         lambda p: manifest.write(p, manifest.beside(doc, job.plan, output, digests)))]
    if not output.is_dir():
        writers.append((manifest.sbom_path(output),
                        lambda p: sbom.write_spdx(p, spdx_of(job, output, digests))))
    for final, write in writers:
        with staged_file(final) as tmp:
            write(tmp)
    return [final for final, _ in writers]


def spdx_of(job: Job, output: Path, digests: Digests) -> dict[str, object]:
    plan = job.plan
    return sbom.spdx_document(
        name=output.name, output_name=output.name, output_sha256=digests.sha256(output),
        packages=job.packages, mirror=plan.manifest_mirror or plan.mirror,
        distribution=plan.distribution, tool_version=__version__,
        created=plan.epoch if plan.epoch is not None else int(time.time()))
