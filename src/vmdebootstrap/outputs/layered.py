"""--layered live outputs: the cached root and this build's changes as two
squashfs images that live-boot stacks.

live-boot reads /live/filesystem.module, one image per line, and mounts
them as overlayfs lower layers, the last line on top.  The base is the
cached root squashed once per root, compressor and SOURCE_DATE_EPOCH and
kept beside it in the cache; the layer is the upper directory of the
build's overlay (vmdebootstrap.host.overlay), whose whiteouts and opaque or
redirected directories mean the same on top of the base squashfs as on top
of the cached tree.  So a hook change re-squashes only the small layer.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap.host.publish import staged_file
from vmdebootstrap.host.run import Runner
from vmdebootstrap.outputs.files import write_squashfs

log = logging.getLogger("vmdebootstrap")

BASE = "filesystem.squashfs"
LAYER = "filesystem.layer.squashfs"
MODULE = "filesystem.module"  # live-boot's list of images to stack, bottom first
FILES = (LAYER, MODULE)


@dataclass(frozen=True)
class Layers:
    base: Path  # the cached root (a directory in the root cache)
    layer: Path  # the overlay's upper directory: what this build changed


def base_squashfs(runner: Runner, tree: Path, compression: str, epoch: int | None) -> Path:
    """The cached root squashed, beside it in the cache (made once; the
    cache evicts it with its root)."""
    stamp = "now" if epoch is None else str(epoch)
    path = tree.parent / f"{tree.name}.{compression.replace(':', '-')}.{stamp}.squashfs"
    if path.is_file():
        log.info("--layered: the base squashfs is cached (%s)", path.name)
        return path
    with staged_file(path) as tmp:
        write_squashfs(runner, tree, tmp, compression, name="base-squashfs")
    log.info("--layered: squashed the cached root once, as %s", path.name)
    return path


def write_layers(runner: Runner, layers: Layers, dest: Path, compression: str,
                 epoch: int | None) -> None:
    base = base_squashfs(runner, layers.base, compression, epoch)
    try:  # the cache and the output usually share a filesystem
        os.link(base, dest / BASE)
    except OSError:
        shutil.copyfile(base, dest / BASE)
    write_squashfs(runner, layers.layer, dest / LAYER, compression)
    (dest / MODULE).write_text(f"{BASE}\n{LAYER}\n")
