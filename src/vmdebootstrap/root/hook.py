"""The --customize hook contract.

The hook is one executable run as root on the host with the root directory
as $1 and the output name as $2.  Hooks usually source the shell library in
helpers/customise.sh (its path is in $VMDEBOOTSTRAP_HELPERS).  Whatever the
hook does or fails to do, after_hook puts the root back into a state the
rest of the build can rely on: no processes or mounts inside it, no daemon
block, and the image's own apt sources.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap.errors import BuildError, UsageError
from vmdebootstrap.host import resources
from vmdebootstrap.host.run import CommandError, CommandTimeout, Runner, format_tail

log = logging.getLogger("vmdebootstrap")

_HERE = Path(__file__).resolve().parent
HELPERS: Path = _HERE / "helpers" / "customise.sh"
EXAMPLES_DIR: Path = _HERE.parent / "examples"

# prepare_apt_source in the helpers creates this directory and
# replace_apt_source removes it, so its presence means the build source is
# still in place.
SAVED_SOURCES = "etc/apt/vmdebootstrap-saved"
POLICY_RC_D = "usr/sbin/policy-rc.d"
# The line disable_daemons writes, so a policy-rc.d that came with the image
# or from the build itself is never removed here.
DAEMON_BLOCK_MARKER = "# vmdebootstrap customise.sh disable_daemons"


def find_hook(script: str, config_dirs: Sequence[Path], cwd: Path | None = None) -> Path:
    """Locate the --customize script before the build starts.

    Search order: the current directory, each config file's directory in
    the order given, then the shipped examples.  The first match is the
    hook, even if a later one would be executable: silently running a
    different script than the user's would be worse than an error.
    """
    if not script:
        raise UsageError("--customize: no script given")
    try:
        wanted = Path(script).expanduser()
    except RuntimeError:  # ~user of a user that does not exist
        raise UsageError(f"--customize: cannot expand {script!r}: no such user") from None
    if wanted.is_absolute():
        candidates = [wanted]
    else:
        base = cwd if cwd is not None else Path.cwd()
        dirs = [base, *config_dirs, EXAMPLES_DIR]
        candidates = list(dict.fromkeys(Path(os.path.abspath(d / wanted)) for d in dirs))
    for path in candidates:
        if not path.exists() or path.is_dir():
            continue
        if not os.access(path, os.X_OK):
            raise UsageError(f"--customize: {path} is not executable (chmod +x {path})")
        _check_interpreter(path)
        return path.resolve()
    searched = ", ".join(str(c.parent) for c in candidates)
    raise UsageError(f"--customize: {script} not found (looked in {searched})")


def _check_interpreter(path: Path) -> None:
    # Without a #! line exec fails with "Exec format error" mid-build;
    # a shell would guess, but the hook is not run through one.
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as e:
        raise UsageError(f"--customize: cannot read {path}: {e.strerror}") from None
    if not (head.startswith(b"#!") or head == b"\x7fELF"):
        raise UsageError(f"--customize: {path} has no #! line (e.g. #!/bin/sh)")


@dataclass(frozen=True)
class HookEnv:
    arch: str
    distribution: str
    mirror: str  # the build mirror
    apt_mirror: str  # the mirror the finished image uses
    components: tuple[str, ...]


def hook_environment(root: Path, env: HookEnv) -> dict[str, str]:
    return {
        "VMDEBOOTSTRAP_ROOT": os.path.abspath(root),
        "VMDEBOOTSTRAP_ARCH": env.arch,
        "VMDEBOOTSTRAP_DISTRIBUTION": env.distribution,
        "VMDEBOOTSTRAP_MIRROR": env.mirror,
        "VMDEBOOTSTRAP_APT_MIRROR": env.apt_mirror,
        "VMDEBOOTSTRAP_COMPONENTS": ",".join(env.components),
        "VMDEBOOTSTRAP_HELPERS": str(HELPERS),
    }


def run_hook(runner: Runner, hook: Path, root: Path, output_name: str, env: HookEnv,
             timeout: float | None) -> None:
    """Run the hook, then always clean up after it.

    If both the hook and the clean-up fail, the hook's error is the one
    raised: it is the cause, the clean-up failure is logged.
    """
    log.info("running customisation hook %s", hook)
    try:
        _execute(runner, hook, root, output_name, env, timeout)
    except BaseException:
        try:
            after_hook(runner, root)
        except Exception as cleanup_error:
            log.error("cleaning up after the failed hook: %s", cleanup_error)
        raise
    after_hook(runner, root)


def _execute(runner: Runner, hook: Path, root: Path, output_name: str, env: HookEnv,
             timeout: float | None) -> None:
    argv = [str(hook), os.path.abspath(root), output_name]
    try:
        runner.run(argv, env=hook_environment(root, env), label="hook", timeout=timeout,
                   reap=True)
    except CommandTimeout as e:
        raise BuildError(
            f"customisation hook {hook} failed: still running after --hook-timeout "
            f"{timeout:g} s; it was stopped with everything it started{_tail(e)}"
        ) from e
    except CommandError as e:
        raise BuildError(
            f"customisation hook {hook} failed: exited with status {e.returncode}{_tail(e)}"
        ) from e
    except OSError as e:
        raise BuildError(f"customisation hook {hook} could not be started: {e}") from e


def _tail(error: CommandError) -> str:
    return "\n  last output:\n" + format_tail(error.tail) if error.tail else ""


def after_hook(runner: Runner, root: Path, *,
               mountinfo: Callable[[], str] | None = None) -> list[str]:
    """Undo what a hook left behind; return the warnings logged.

    Each step runs even if an earlier one failed.  Raises BuildError only if
    something stays mounted under the root, because the next build steps
    would then pack or delete whatever is mounted there (the host's /dev).
    """
    read_mounts = mountinfo or (lambda: resources.MOUNTINFO.read_text())
    warnings: list[str] = []

    def warn(message: str) -> None:
        log.warning("%s", message)
        warnings.append(message)

    # Processes first: a daemon holding files open keeps mounts busy.
    pids = resources.processes_in_root(root)
    if pids:
        warn(f"the hook left processes running inside {root}: "
             f"{', '.join(map(str, pids))}; stopping them")
        resources.kill_processes_in(root)

    here = os.path.realpath(root)
    left = [p for p in resources.mounts_under(root, read_mounts()) if p != here]
    failed: list[str] = []
    if left:
        warn(f"the hook left mounted under {root}: {', '.join(left)}; unmounting "
             "(call cleanup in the hook)")
        # The root itself is a mount point in disk-image builds: keep it.
        failed = resources.unmount_under(root, runner, mountinfo=read_mounts,
                                         include_self=False)

    block = root / POLICY_RC_D
    try:
        if _is_our_daemon_block(block):
            block.unlink()
            warn(f"the hook left daemons disabled ({POLICY_RC_D} from disable_daemons); "
                 "removed it (call remove_daemon_block in the hook)")
    except OSError as e:
        log.error("could not remove %s: %s", block, e)

    try:
        if restore_apt_sources(root):
            warn("the hook left the build apt source in place (prepare_apt_source "
                 "without replace_apt_source); restored the image's sources")
    except OSError as e:
        log.error("could not restore the image's apt sources from %s: %s",
                  root / SAVED_SOURCES, e)

    if failed:
        raise BuildError(f"could not unmount what the hook left under {root}: "
                         f"{', '.join(failed)}")
    return warnings


def _is_our_daemon_block(path: Path) -> bool:
    if not path.is_file() or path.is_symlink():
        return False
    with contextlib.suppress(UnicodeDecodeError):
        return DAEMON_BLOCK_MARKER in path.read_text().splitlines()
    return False


def restore_apt_sources(root: Path) -> bool:
    """Undo prepare_apt_source if replace_apt_source was not called.

    Returns whether there was anything to restore.  Does what
    replace_apt_source does, including dropping the build mirror's lists.
    """
    saved = root / SAVED_SOURCES
    if saved.is_symlink() or not saved.is_dir():
        return False
    apt = root / "etc/apt"
    build_list = apt / "sources.list"
    build_list.unlink(missing_ok=True)
    saved_list = saved / "sources.list"
    if saved_list.exists() or saved_list.is_symlink():
        os.replace(saved_list, build_list)
    saved_d = saved / "sources.list.d"
    if saved_d.is_dir() and not saved_d.is_symlink():
        dest = apt / "sources.list.d"
        dest.mkdir(exist_ok=True)
        for entry in saved_d.iterdir():
            os.replace(entry, dest / entry.name)
        saved_d.rmdir()
    saved.rmdir()
    clear_apt_lists(root)
    return True


def clear_apt_lists(root: Path) -> None:
    lists = root / "var/lib/apt/lists"
    if not lists.is_dir():
        return
    for entry in lists.iterdir():
        if entry.name in ("lock", "partial"):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
