"""vmdebootstrap verify OUTPUT: rebuild an output from the manifest it
carries and say whether the bytes are the same.

The manifest (vmdebootstrap.outputs.manifest) names every input: the
settings, the mirror state (its Release file's sha256), SOURCE_DATE_EPOCH,
the hook and custom packages by sha256, the password hashes.  verify finds
the input files by their hashes, refuses when the mirror no longer serves
that state, rebuilds in a temporary directory and compares.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from vmdebootstrap import __version__
from vmdebootstrap.errors import BuildError, UsageError
from vmdebootstrap.host.digest import file_sha256
from vmdebootstrap.host.passwords import UserSpec
from vmdebootstrap.intent.options import BY_NAME, Kind
from vmdebootstrap.intent.plan import Plan
from vmdebootstrap.intent.settings import build_settings
from vmdebootstrap.outputs import compare, manifest
from vmdebootstrap.root.cache import fetch_release

log = logging.getLogger("vmdebootstrap")

# A placeholder password: the recorded hashes replace what it hashes to.
PLACEHOLDER = "verify-placeholder"


class Differs(BuildError):
    """The rebuilt output is not the same (exit 1)."""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="vmdebootstrap verify",
        description="Rebuild OUTPUT from the manifest it carries and compare the bytes: "
        "exit 0 if identical, 1 if not, 2 if it cannot be rebuilt here.")
    p.add_argument("output", metavar="OUTPUT", type=Path,
                   help="an ISO, squash directory, tarball or image built by vmdebootstrap")
    p.add_argument("--hook-dir", action="append", type=Path, default=[], metavar="DIR",
                   help="look here for the hook and custom packages (by their sha256; "
                   "repeatable; also looked for beside OUTPUT and where they were read from)")
    p.add_argument("--mirror", metavar="URL", help="fetch the recorded mirror state from "
                   "this URL (a snapshot of it) instead of the recorded mirror")
    p.add_argument("--work-dir", type=Path, metavar="DIR",
                   help="rebuild under DIR (default: $TMPDIR); the rebuild is removed after")
    p.add_argument("--keep", action="store_true", help="keep the rebuilt output in --work-dir")
    p.add_argument("--cache-dir", metavar="DIR", help="the cache the rebuild uses")
    p.add_argument("--no-cache", action="store_true", help="rebuild without the caches")
    p.add_argument("--diffoscope", type=Path, metavar="FILE",
                   help="where diffoscope's report goes when the bytes differ and diffoscope "
                   "is installed (default: OUTPUT's name + .diffoscope.txt in the current "
                   "directory)")
    p.add_argument("--no-diffoscope", action="store_true", help="do not run diffoscope")
    p.add_argument("--verbose", action="store_true", help="show each step of the rebuild")
    return p.parse_args(list(argv))


# --- finding the manifest -------------------------------------------------------------


def load_manifest(output: Path) -> dict[str, object]:
    """The manifest beside OUTPUT, or the one inside it."""
    if not output.exists():
        raise UsageError(f"{output}: no such file or directory")
    # Beside first: only that one says where the inputs were read from.
    candidates = [manifest.beside_path(output)]
    if output.is_dir():
        candidates.append(output / manifest.NAME)
    for path in candidates:
        if path.is_file():
            return _parsed(path.read_bytes(), path)
    if output.is_file():
        inside = _inside(output)
        if inside is not None:
            return _parsed(inside, output)
    raise UsageError(f"{output}: no vmdebootstrap manifest beside it or inside it (outputs "
                     "of vmdebootstrap 2.0 and later carry one)")


def _inside(output: Path) -> bytes | None:
    inside_iso = compare.iso_member(output, f"/live/{manifest.NAME}")
    if inside_iso is not None:
        return inside_iso
    with contextlib.suppress(tarfile.TarError, OSError), tarfile.open(output) as tar:
        member = tar.extractfile(f"./{manifest.IN_ROOT}")
        if member is not None:
            return member.read()
    return None


def _parsed(data: bytes, where: Path) -> dict[str, object]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise UsageError(f"{where}: the manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != manifest.FORMAT:
        raise UsageError(f"{where}: not a vmdebootstrap manifest of format {manifest.FORMAT}")
    return doc


# --- inputs ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Found:
    path: Path
    matches: bool  # its sha256 is the recorded one


def find_inputs(doc: Mapping[str, object], output: Path,
                dirs: Sequence[Path]) -> dict[str, list[Found]]:
    """Each recorded input file: one with the recorded sha256 if there is
    one, else one with the recorded name (the rebuild will then differ)."""
    inputs = doc.get("inputs") or {}
    recorded = doc.get("input_paths") or {}
    assert isinstance(inputs, dict) and isinstance(recorded, dict)
    found: dict[str, list[Found]] = {}
    missing = []
    for option, entries in inputs.items():
        paths = [Path(p) for p in recorded.get(option, [])]
        places = [output.parent if output.is_file() else output,
                  *(p.parent for p in paths), Path.cwd()]
        found[option] = []
        for entry in entries:
            hit = _find(entry["name"], entry["sha256"], dirs, places)
            if hit is None:
                missing.append(f"--{option}: {entry['name']} (sha256 {entry['sha256']}) is "
                               "not beside the output, in a --hook-dir or where it was read "
                               "from: give its directory with --hook-dir DIR")
            else:
                found[option].append(hit)
    if missing:
        raise UsageError(missing)
    return found


def _find(name: str, digest: str, hook_dirs: Sequence[Path],
          places: Sequence[Path]) -> Found | None:
    """Any file of a --hook-dir may be the input renamed; elsewhere only a
    file of the recorded name is looked at (beside an output there are
    big files, not worth hashing)."""
    same_name = None
    for place in dict.fromkeys(p.resolve() for p in (*hook_dirs, *places) if p.is_dir()):
        any_name = place in {d.resolve() for d in hook_dirs}
        for candidate in sorted(place.iterdir()) if any_name else [place / name]:
            if not candidate.is_file():
                continue
            if candidate.name == name and same_name is None:
                same_name = candidate
            if file_sha256(candidate) == digest:
                return Found(candidate, True)
    return Found(same_name, False) if same_name is not None else None


# --- the mirror -----------------------------------------------------------------------


def check_mirror(doc: Mapping[str, object], url: str | None) -> str:
    """The mirror to rebuild from; refuses when it serves another state."""
    mirror = doc["mirror"]
    assert isinstance(mirror, dict)
    url = url or str(mirror["url"])
    want = mirror.get("release_sha256")
    release = fetch_release(url, str(mirror["suite"]))
    have = hashlib.sha256(release).hexdigest()
    if want and have != want:
        date = manifest.release_facts(release)["date"]
        raise UsageError(
            f"the mirror {url} has moved on: it serves {mirror['suite']} as of {date} "
            f"(Release sha256 {have[:16]}...), and OUTPUT was built from the state of "
            f"{mirror.get('date')} (Release sha256 {str(want)[:16]}...): rebuild from a "
            "snapshot of that state, with --mirror URL of a snapshot mirror's copy of "
            f"{mirror.get('date')}")
    return url


# --- rebuilding -----------------------------------------------------------------------


def settings_layer(doc: Mapping[str, object], inputs: Mapping[str, list[Found]],
                   output_option: str, target: Path, mirror: str,
                   args: argparse.Namespace) -> dict[str, object]:
    values: dict[str, object] = {}
    settings = doc["settings"]
    assert isinstance(settings, dict)
    for name, value in settings.items():
        opt = BY_NAME.get(name)
        if opt is None:
            raise UsageError(f"the manifest has a setting {name!r} this vmdebootstrap "
                             f"({__version__}) does not know: verify with the version that "
                             f"built it ({doc.get('vmdebootstrap')})")
        values[name] = tuple(value) if opt.kind is Kind.LIST else value
    values["mirror"] = mirror
    for option, found in inputs.items():
        paths = [str(f.path) for f in found]
        values[option] = tuple(paths) if BY_NAME[option].kind is Kind.LIST else paths[0]
    passwords = doc.get("passwords") or {}
    assert isinstance(passwords, dict)
    users = passwords.get("users") or []
    values["user"] = tuple(f"{u['name']}/{PLACEHOLDER if u['password_hash'] else ''}"
                           for u in users)
    if passwords.get("root_password_hash"):
        values["root-password"] = PLACEHOLDER
    values[output_option] = str(target)
    if args.no_cache:
        values["no-cache"] = True
    if args.cache_dir:
        values["cache-dir"] = args.cache_dir
    values["verbose"] = args.verbose
    return values


def with_recorded_hashes(plan: Plan, doc: Mapping[str, object], recorded_mirror: str) -> Plan:
    """The plan with the image's password hashes as recorded (a secret's
    text is never in a manifest), and the recorded mirror named."""
    passwords = doc.get("passwords") or {}
    assert isinstance(passwords, dict)
    users = tuple(UserSpec(u["name"], u["password_hash"]) for u in passwords.get("users", []))
    system = dataclasses.replace(plan.system, users=users,
                                 root_password_hash=passwords.get("root_password_hash"))
    return dataclasses.replace(plan, system=system, user_secrets=(), root_secret=None,
                               manifest_mirror=recorded_mirror)


def output_kind(doc: Mapping[str, object], output: Path) -> str:
    kind = str(doc.get("output"))
    if output.is_dir():
        return "squash"  # an --iso build's kept squash directory too
    return kind


@contextlib.contextmanager
def epoch_env(epoch: int) -> Iterator[None]:
    saved = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = saved


def work_dir(args: argparse.Namespace) -> Path:
    base = args.work_dir or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="vmdebootstrap-verify-", dir=base))


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --- the command ----------------------------------------------------------------------


def rebuild(doc: Mapping[str, object], args: argparse.Namespace, work: Path) -> tuple[
        Path, list[str]]:
    """Rebuild in ``work``: the output that corresponds to args.output, and
    the inputs that are not the recorded files."""
    from vmdebootstrap.build import build
    from vmdebootstrap.host.run import SubprocessRunner
    from vmdebootstrap.plan import make_plan

    if doc.get("output") == "image":
        raise UsageError(f"{args.output}: disk images are not bit-reproducible yet (mkfs "
                         "gives each filesystem a random UUID and the time of the build): "
                         "verify checks ISOs, squash directories and tarballs")
    epoch = doc.get("source_date_epoch")
    if not isinstance(epoch, int):
        raise UsageError(f"{args.output} was not built reproducibly (no SOURCE_DATE_EPOCH, "
                         "no --reproducible): it cannot be rebuilt bit for bit")
    inputs = find_inputs(doc, args.output, args.hook_dir)
    mirror = doc["mirror"]
    assert isinstance(mirror, dict)
    url = check_mirror(doc, args.mirror)
    target = work / args.output.name
    layer = settings_layer(doc, inputs, output_kind(doc, args.output), target, url, args)
    if args.output.is_dir() and doc.get("output") == "iso":
        layer["iso"] = str(work / "rebuilt.iso")  # the manifest says which build made it
        layer["squash"] = str(target)
    plan = make_plan(build_settings([("the manifest", layer)]))
    plan = with_recorded_hashes(plan, doc, str(mirror["url"]))
    with epoch_env(epoch):
        build(plan, SubprocessRunner())
    changed = [f"--{option}: {f.path} is not the file the output was built with (its "
               "sha256 differs)" for option, found in inputs.items() for f in found
               if not f.matches]
    return target, changed


def verify(args: argparse.Namespace) -> int:
    """Exit status 0 identical, 1 different; a UsageError when the output
    cannot be rebuilt here."""
    doc = load_manifest(args.output)
    if os.geteuid() != 0:
        raise UsageError("vmdebootstrap verify must run as root: it rebuilds the output "
                         "(mounts, chroot)")
    work = work_dir(args)
    try:
        rebuilt, changed = rebuild(doc, args, work)
        differences = changed + compare.compare(args.output, rebuilt)
        if not differences:
            print(f"identical: {args.output} is what its manifest builds")
            return 0
        with contextlib.suppress(UsageError):
            differences += compare.changed_packages(doc, load_manifest(rebuilt))
        print(f"differs: {args.output} is not what its manifest builds:")
        print("\n".join(f"  {line}" for line in differences))
        report = None if args.no_diffoscope else compare.diffoscope(
            args.output, rebuilt, args.diffoscope or Path(f"{args.output.name}.diffoscope.txt"))
        if report is not None:
            print(f"diffoscope's report: {report}")
        if args.keep:
            print(f"the rebuilt output: {rebuilt}")
        return Differs.exit_code
    finally:
        if not args.keep:
            remove(work)
