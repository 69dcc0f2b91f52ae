"""The build manifest: the recipe every output carries, so that anyone can
rebuild it (``vmdebootstrap verify``) and see what is in it.

One JSON document (format 1), written with sorted keys so that the same
build gives the same bytes:

- ``vmdebootstrap``: the version that built it; ``output``: the kind;
- ``settings``: every option that shaped the output, as a config file
  would give it (distribution, architecture and mirrors resolved);
  options that only say how to run (--log, --owner, --cache-dir...) and
  the output paths are left out;
- ``inputs``: the hook, --custom-package files, splash and preseed by
  file name and sha256 (never their paths: the bytes must not depend on
  where the build ran);
- ``passwords``: the users' and root's crypt hashes as they are in the
  image (a secret's text never reaches a manifest);
- ``mirror``: its URL, suite, the sha256 and Date of the Release file the
  build saw, and whether it is a snapshot;
- ``source_date_epoch``; ``bootstrap``: the tool and its version;
- ``packages``: name, version, architecture, source and source version;
- ``files`` (live outputs): the sha256 of the squashfs, kernel and initrd.

Where it is: a squash directory's ``vmdebootstrap.manifest.json``, the
ISO's ``/live/vmdebootstrap.manifest.json``, and ``/var/lib/vmdebootstrap/
manifest.json`` in a tarball's or an image's root.  Beside every output,
``NAME.manifest.json`` holds the same plus the paths the inputs were read
from and, for an output file, its own sha256 and size.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from vmdebootstrap import __version__
from vmdebootstrap.errors import BuildError
from vmdebootstrap.host.digest import Digests, file_sha256
from vmdebootstrap.intent.options import OPTIONS, Kind, Option, format_mode
from vmdebootstrap.intent.plan import Plan
from vmdebootstrap.root.inventory import InstalledPackage
from vmdebootstrap.root.reproducible import release_date

NAME = "vmdebootstrap.manifest.json"
IN_ROOT = Path("var/lib/vmdebootstrap/manifest.json")
FORMAT = 1

# Options that say how a build runs or where its outputs go, not what they
# hold; and those recorded elsewhere in the manifest.
NOT_SETTINGS = frozenset({
    "image", "tarball", "squash", "iso", "verbose", "log", "log-mode", "log-level",
    "dry-run", "owner", "cache-dir", "no-cache", "refresh-cache", "boot-test",
    "keep-on-failure", "pkglist", "root-password", "user", "customize",
    "custom-package", "splash", "preseed",
    "reproducible",  # it only chooses source_date_epoch, which is recorded
})
# Settings of the ISO alone (the image group's are a disk image's alone).
ISO_ONLY = frozenset({"iso-volume-id", "iso-menu-title", "installer"})


def release_facts(release: bytes) -> dict[str, object]:
    """What the manifest pins of the mirror's state: its Release file."""
    text = release.decode("utf-8", "replace")
    fields = {}
    for key in ("Date", "Valid-Until"):
        m = re.search(rf"^{key}: (.+)$", text, re.M)
        fields[key] = m.group(1).strip() if m else None
    epoch: int | None
    try:
        epoch = release_date(release)
    except (BuildError, TypeError, ValueError):  # no Date, or not a date
        epoch = None
    return {
        "release_file": "InRelease" if text.startswith("-----BEGIN PGP SIGNED") else "Release",
        "release_sha256": hashlib.sha256(release).hexdigest(),
        "date": fields["Date"],
        "date_epoch": epoch,
        "valid_until": fields["Valid-Until"],
    }


def _setting(kind: Kind, value: object) -> object:
    """A setting as a config file gives it (what verify feeds back)."""
    if kind is Kind.BOOL:
        return bool(value)
    if kind is Kind.LIST:
        assert isinstance(value, tuple)
        return list(value)
    if kind is Kind.MODE:
        assert isinstance(value, int)
        return format_mode(value)
    return str(value)


def _applies(opt: Option, output: str) -> bool:
    if opt.group == "image":
        return output == "image"
    return opt.name not in ISO_ONLY or output == "iso"


def settings_of(plan: Plan) -> dict[str, object]:
    s = plan.settings
    out: dict[str, object] = {}
    for opt in OPTIONS:
        if opt.name in NOT_SETTINGS or not _applies(opt, plan.output):
            continue
        value = getattr(s, opt.dest)
        if value is None or value == ():
            continue
        out[opt.name] = _setting(opt.kind, value)
    # Resolved: "stable" or the host's mirror mean other things tomorrow.
    out.update({"distribution": plan.distribution, "arch": plan.arch,
                "mirror": plan.manifest_mirror or plan.mirror, "apt-mirror": plan.apt_mirror})
    return out


def input_files(plan: Plan) -> dict[str, list[Path]]:
    """The files the build read its inputs from, by option, as planned."""
    iso = plan.iso
    found = {
        "customize": [plan.system.hook] if plan.system.hook else [],
        "custom-package": list(plan.custom_debs),
        "splash": [iso.splash] if iso and iso.splash else [],
        "preseed": [iso.preseed] if iso and iso.preseed else [],
    }
    return {name: [p.resolve() for p in paths] for name, paths in found.items() if paths}


def recipe(plan: Plan, *, release: bytes, tool_version: str,
           packages: Sequence[InstalledPackage]) -> dict[str, object]:
    """The manifest of a build, without the files it wrote."""
    system = plan.system
    return {
        "format": FORMAT,
        "vmdebootstrap": __version__,
        "output": plan.output,
        "settings": settings_of(plan),
        "inputs": {name: [{"name": p.name, "sha256": file_sha256(p)} for p in paths]
                   for name, paths in input_files(plan).items()},
        "passwords": {
            "users": [{"name": u.name, "password_hash": u.password_hash}
                      for u in system.users],
            "root_password_hash": system.root_password_hash,
        },
        "mirror": {"url": plan.manifest_mirror or plan.mirror, "suite": plan.distribution,
                   "snapshot": plan.snapshot,
                   **release_facts(release)},
        "source_date_epoch": plan.epoch,
        "bootstrap": {"tool": plan.bootstrap_tool, "version": tool_version},
        "packages": [{"name": p.name, "version": p.version, "architecture": p.architecture,
                      "source": p.source, "source_version": p.source_version}
                     for p in sorted(packages, key=lambda p: (p.name, p.architecture))],
    }


def with_files(doc: Mapping[str, object], directory: Path, names: Sequence[str],
               digests: Digests) -> dict[str, object]:
    """The manifest with the sha256 of a live output's files."""
    return {**doc, "files": {n: digests.sha256(directory / n) for n in names
                             if (directory / n).is_file()}}


def beside(doc: Mapping[str, object], plan: Plan, output: Path,
           digests: Digests) -> dict[str, object]:
    """The manifest published beside an output: where the inputs were read
    from (for verify), and an output file's own checksum (a directory's
    files are in ``files`` already)."""
    paths = {"input_paths": {name: [str(p) for p in paths]
                             for name, paths in input_files(plan).items()}}
    if output.is_dir():
        return {**doc, **paths}
    return {**doc, **paths,
            "output_file": {"name": output.name, "sha256": digests.sha256(output),
                            "size": output.stat().st_size}}


def dumps(doc: Mapping[str, object]) -> str:
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write(path: Path, doc: Mapping[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(doc), encoding="utf-8")
    return path


def beside_path(output: Path) -> Path:
    return output.with_name(f"{output.name}.manifest.json")


def sbom_path(output: Path) -> Path:
    return output.with_name(f"{output.name}.spdx.json")
