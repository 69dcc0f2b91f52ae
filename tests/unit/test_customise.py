"""The hook contract without root: search, environment, clean-up, shell syntax.

The shell library's file operations run for real on tmp_path, with a fake
``chroot`` first on PATH so nothing runs inside a real root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests.fakes import RecordingRunner
from vmdebootstrap.errors import BuildError, UsageError
from vmdebootstrap.host.run import CommandError, CommandTimeout, Result
from vmdebootstrap.root import hook as customise
from vmdebootstrap.root.hook import (
    DAEMON_BLOCK_MARKER,
    HELPERS,
    SAVED_SOURCES,
    HookEnv,
    after_hook,
    find_hook,
    hook_environment,
    restore_apt_sources,
    run_hook,
)

ENV = HookEnv(
    arch="amd64",
    distribution="bookworm",
    mirror="http://build.example/debian",
    apt_mirror="http://image.example/debian",
    components=("main", "contrib"),
)


def make_script(path: Path, body: str = "#!/bin/sh\nexit 0\n", mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(mode)
    return path


class EnvRecordingRunner(RecordingRunner):
    """RecordingRunner that also keeps the keyword arguments of each call."""

    def __init__(self, fail: Exception | None = None) -> None:
        super().__init__()
        self.kwargs: list[dict[str, object]] = []
        self.fail = fail

    def run(self, argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> Result:
        result = super().run(argv)
        self.kwargs.append(kwargs)
        if self.fail is not None and self.calls[-1][0] != "umount":
            raise self.fail
        return result


# --- find_hook ---------------------------------------------------------------

@pytest.fixture
def no_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    examples = tmp_path / "examples"
    examples.mkdir()
    monkeypatch.setattr(customise, "EXAMPLES_DIR", examples)
    return examples


def test_find_hook_prefers_cwd(tmp_path: Path, no_examples: Path) -> None:
    cwd, conf = tmp_path / "cwd", tmp_path / "conf"
    here = make_script(cwd / "hook.sh")
    make_script(conf / "hook.sh")
    make_script(no_examples / "hook.sh")
    assert find_hook("hook.sh", [conf], cwd=cwd) == here.resolve()


def test_find_hook_config_dirs_in_order(tmp_path: Path, no_examples: Path) -> None:
    cwd, first, second = tmp_path / "cwd", tmp_path / "a", tmp_path / "b"
    cwd.mkdir()
    first.mkdir()
    wanted = make_script(second / "hooks" / "live.sh")
    assert find_hook("hooks/live.sh", [first, second], cwd=cwd) == wanted.resolve()
    earlier = make_script(first / "hooks" / "live.sh")
    assert find_hook("hooks/live.sh", [first, second], cwd=cwd) == earlier.resolve()


def test_find_hook_falls_back_to_examples(tmp_path: Path, no_examples: Path) -> None:
    shipped = make_script(no_examples / "live.sh")
    assert find_hook("live.sh", [tmp_path / "conf"], cwd=tmp_path) == shipped.resolve()


def test_find_hook_absolute_path(tmp_path: Path, no_examples: Path) -> None:
    hook = make_script(tmp_path / "x" / "hook")
    assert find_hook(str(hook), [], cwd=tmp_path / "elsewhere") == hook.resolve()


def test_find_hook_skips_directories(tmp_path: Path, no_examples: Path) -> None:
    (tmp_path / "cwd" / "hook").mkdir(parents=True)
    wanted = make_script(tmp_path / "conf" / "hook")
    assert find_hook("hook", [tmp_path / "conf"], cwd=tmp_path / "cwd") == wanted.resolve()


def test_find_hook_missing_names_option_and_places(tmp_path: Path, no_examples: Path) -> None:
    with pytest.raises(UsageError) as info:
        find_hook("nope.sh", [tmp_path / "conf"], cwd=tmp_path)
    message = str(info.value)
    assert "--customize" in message and "nope.sh" in message
    assert str(tmp_path / "conf") in message and str(no_examples) in message


def test_find_hook_not_executable(tmp_path: Path, no_examples: Path) -> None:
    hook = make_script(tmp_path / "hook.sh", mode=0o644)
    # An executable one later in the search order must not be picked silently.
    make_script(no_examples / "hook.sh")
    if os.access(hook, os.X_OK):
        pytest.skip("cannot make a file non-executable here")
    with pytest.raises(UsageError, match=r"--customize: .*hook\.sh is not executable"):
        find_hook("hook.sh", [], cwd=tmp_path)


def test_find_hook_without_interpreter_line(tmp_path: Path, no_examples: Path) -> None:
    make_script(tmp_path / "hook.sh", body="echo hi\n")
    with pytest.raises(UsageError, match="no #! line"):
        find_hook("hook.sh", [], cwd=tmp_path)


def test_find_hook_empty_name(no_examples: Path) -> None:
    with pytest.raises(UsageError, match="--customize"):
        find_hook("", [])


def test_shipped_paths() -> None:
    assert HELPERS.is_absolute() and HELPERS.is_file()
    assert customise.EXAMPLES_DIR.is_absolute()
    assert customise.EXAMPLES_DIR.parent == HELPERS.parent.parent.parent  # package root


# --- environment and running -------------------------------------------------

def test_hook_environment(tmp_path: Path) -> None:
    env = hook_environment(tmp_path / "root", ENV)
    assert env == {
        "VMDEBOOTSTRAP_ROOT": str(tmp_path / "root"),
        "VMDEBOOTSTRAP_ARCH": "amd64",
        "VMDEBOOTSTRAP_DISTRIBUTION": "bookworm",
        "VMDEBOOTSTRAP_MIRROR": "http://build.example/debian",
        "VMDEBOOTSTRAP_APT_MIRROR": "http://image.example/debian",
        "VMDEBOOTSTRAP_COMPONENTS": "main,contrib",
        "VMDEBOOTSTRAP_HELPERS": str(HELPERS),
    }


def test_hook_environment_root_is_absolute(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert hook_environment(Path("root"), ENV)["VMDEBOOTSTRAP_ROOT"] == str(tmp_path / "root")


def test_run_hook_records_argv_and_env(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    hook = make_script(tmp_path / "hook.sh")
    runner = EnvRecordingRunner()
    run_hook(runner, hook, root, "live-image", ENV, timeout=30)
    assert runner.calls == [[str(hook), str(root), "live-image"]]
    kwargs = runner.kwargs[0]
    assert kwargs["env"] == hook_environment(root, ENV)
    assert kwargs["label"] == "hook"
    assert kwargs["timeout"] == 30


def test_run_hook_failure_names_hook_and_cleans_up(tmp_path: Path) -> None:
    root = tmp_path / "root"
    block = make_script(root / customise.POLICY_RC_D,
                        body=f"#!/bin/sh\n{DAEMON_BLOCK_MARKER}\nexit 101\n")
    hook = tmp_path / "hook.sh"
    error = CommandError([str(hook), str(root), "out"], 3, ["apt failed", "E: no"])
    with pytest.raises(BuildError) as info:
        run_hook(EnvRecordingRunner(fail=error), hook, root, "out", ENV, None)
    message = str(info.value)
    assert f"customisation hook {hook} failed" in message
    assert "status 3" in message and "E: no" in message
    assert not block.exists()


def test_run_hook_timeout_says_option(tmp_path: Path) -> None:
    hook = tmp_path / "hook.sh"
    error = CommandTimeout([str(hook)], -9, ["sleeping"], "timed out after 2 s")
    with pytest.raises(BuildError, match="--hook-timeout 2 s") as info:
        run_hook(EnvRecordingRunner(fail=error), hook, tmp_path, "out", ENV, 2)
    assert str(hook) in str(info.value)


def test_run_hook_cannot_start(tmp_path: Path) -> None:
    hook = tmp_path / "hook.sh"
    error = OSError(8, "Exec format error")
    with pytest.raises(BuildError, match="could not be started"):
        run_hook(EnvRecordingRunner(fail=error), hook, tmp_path, "out", ENV, None)


# --- after_hook and restore_apt_sources ---------------------------------------

def fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    apt = root / "etc/apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text("deb http://image.example/debian bookworm main\n")
    (apt / "sources.list.d" / "extra.sources").write_text("Types: deb\n")
    lists = root / "var/lib/apt/lists"
    (lists / "partial").mkdir(parents=True)
    (lists / "lock").write_text("")
    return root


def leave_build_source(root: Path) -> None:
    """What prepare_apt_source leaves when replace_apt_source is not called."""
    apt = root / "etc/apt"
    saved = root / SAVED_SOURCES
    (saved / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").rename(saved / "sources.list")
    (apt / "sources.list.d" / "extra.sources").rename(saved / "sources.list.d/extra.sources")
    (apt / "sources.list").write_text("deb http://build.example/debian bookworm main\n")
    lists = root / "var/lib/apt/lists"
    (lists / "build.example_debian_dists_bookworm_InRelease").write_text("x")
    (lists / "auxfiles").mkdir()


def test_restore_apt_sources_nothing_to_do(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    assert restore_apt_sources(root) is False
    assert "image.example" in (root / "etc/apt/sources.list").read_text()


def test_restore_apt_sources(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    leave_build_source(root)
    assert restore_apt_sources(root) is True
    apt = root / "etc/apt"
    assert (apt / "sources.list").read_text() == (
        "deb http://image.example/debian bookworm main\n")
    assert (apt / "sources.list.d" / "extra.sources").read_text() == "Types: deb\n"
    assert not (root / SAVED_SOURCES).exists()
    assert sorted(p.name for p in (root / "var/lib/apt/lists").iterdir()) == ["lock", "partial"]


def test_restore_apt_sources_image_had_no_sources_list(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    (root / "etc/apt/sources.list").unlink()
    (root / SAVED_SOURCES / "sources.list.d").mkdir(parents=True)
    (root / "etc/apt/sources.list").write_text("deb http://build.example/debian x main\n")
    assert restore_apt_sources(root) is True
    assert not (root / "etc/apt/sources.list").exists()


def test_after_hook_clean_root_no_warnings(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    runner = RecordingRunner()
    assert after_hook(runner, root, mountinfo=lambda: "") == []
    assert runner.calls == []


def test_after_hook_removes_daemon_block_and_restores_sources(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    leave_build_source(root)
    block = make_script(root / customise.POLICY_RC_D,
                        body=f"#!/bin/sh\n{DAEMON_BLOCK_MARKER}\nexit 101\n")
    warnings = after_hook(RecordingRunner(), root, mountinfo=lambda: "")
    assert not block.exists()
    assert len(warnings) == 2
    assert "policy-rc.d" in warnings[0] and "remove_daemon_block" in warnings[0]
    assert "replace_apt_source" in warnings[1]
    assert "image.example" in (root / "etc/apt/sources.list").read_text()


def test_after_hook_keeps_foreign_policy_rc_d(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    block = make_script(root / customise.POLICY_RC_D, body="#!/bin/sh\nexit 101\n")
    assert after_hook(RecordingRunner(), root, mountinfo=lambda: "") == []
    assert block.exists()


def mountinfo_line(n: int, point: str) -> str:
    return f"{n} 1 0:{n} / {point} rw,relatime - tmpfs tmpfs rw"


class UnmountingRunner(RecordingRunner):
    """Drops a mount point from a fake mount table when asked to unmount it."""

    def __init__(self, points: list[str]) -> None:
        super().__init__()
        self.points = points

    def run(self, argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> Result:
        result = super().run(argv)
        if self.calls[-1][0] == "umount":
            self.points.remove(self.calls[-1][-1])
        return result

    def table(self) -> str:
        return "\n".join(mountinfo_line(i, p) for i, p in enumerate(self.points, 100))


def test_after_hook_unmounts_leftovers_but_not_root(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    real = os.path.realpath(root)
    runner = UnmountingRunner([real, f"{real}/proc", f"{real}/dev", f"{real}/dev/pts"])
    warnings = after_hook(runner, root, mountinfo=runner.table)
    assert runner.calls == [
        ["umount", f"{real}/dev/pts"], ["umount", f"{real}/dev"], ["umount", f"{real}/proc"],
    ]
    assert runner.points == [real]
    assert len(warnings) == 1 and f"{real}/dev/pts" in warnings[0]


class FailingUmount(RecordingRunner):
    def run(self, argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> Result:
        super().run(argv)
        return Result(32)


def test_after_hook_raises_if_still_mounted(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    leave_build_source(root)
    table = mountinfo_line(1, f"{os.path.realpath(root)}/dev")
    with pytest.raises(BuildError, match="could not unmount"):
        after_hook(FailingUmount(), root, mountinfo=lambda: table)
    # The other repairs still happened.
    assert not (root / SAVED_SOURCES).exists()


# --- the shell library ---------------------------------------------------------

def test_helpers_parse_with_dash() -> None:
    dash = shutil.which("dash")
    if dash is None:
        pytest.skip("dash not installed")
    subprocess.run([dash, "-n", str(HELPERS)], check=True)


def test_helpers_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed")
    result = subprocess.run([shellcheck, "-s", "sh", str(HELPERS)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_helpers_share_markers_with_python() -> None:
    text = HELPERS.read_text()
    assert f"'{DAEMON_BLOCK_MARKER}'" in text
    assert f"'{SAVED_SOURCES}'" in text


def sh(script: str, env: Mapping[str, str], path_prefix: Path | None = None
       ) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ["PATH"], **env}
    if path_prefix is not None:
        full["PATH"] = f"{path_prefix}:{full['PATH']}"
    return subprocess.run(["sh", "-c", f'. "{HELPERS}"\n{script}'], env=full,
                          capture_output=True, text=True)


FUNCTIONS = ["export_env", "mount_proc", "cleanup", "disable_daemons", "remove_daemon_block",
             "prepare_apt_source http://m", "replace_apt_source", "apt_install hello",
             "mount_support", "prepare_apt_source http://m stable", "blacklist_qemu_bochs"]


@pytest.mark.parametrize("call", FUNCTIONS)
@pytest.mark.parametrize("root", ["", "/", "//", "/tmp/.."])
def test_helpers_refuse_host_root(call: str, root: str, tmp_path: Path) -> None:
    # mount, chroot and umount would touch the host if the guard let them run.
    stubs = fake_commands(tmp_path, ["mount", "umount", "chroot", "mountpoint"])
    result = sh(f"rootdir='{root}'; {call}", {"VMDEBOOTSTRAP_ROOT": root}, stubs)
    assert result.returncode == 1
    assert "vmdebootstrap helpers:" in result.stderr
    assert not (tmp_path / "calls").exists()


def test_helpers_rootdir_overrides_environment(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    result = sh(f"rootdir='{root}'; disable_daemons", {"VMDEBOOTSTRAP_ROOT": "/"})
    assert result.returncode == 0, result.stderr
    assert (root / customise.POLICY_RC_D).exists()


def fake_commands(tmp_path: Path, names: list[str]) -> Path:
    """Stubs that log their argv to tmp_path/calls and succeed."""
    bin_dir = tmp_path / "bin"
    for name in names:
        make_script(bin_dir / name,
                    body=f'#!/bin/sh\necho "{name} $*" >>"{tmp_path}/calls"\nexit 0\n')
    return bin_dir


def test_helpers_export_env(tmp_path: Path) -> None:
    result = sh('LANGUAGE=de; export LANGUAGE; export_env; env',
                {"VMDEBOOTSTRAP_ROOT": str(tmp_path)})
    lines = set(result.stdout.splitlines())
    assert {"DEBIAN_FRONTEND=noninteractive", "DEBCONF_NONINTERACTIVE_SEEN=true",
            "LC_ALL=C.UTF-8", "LANG=C.UTF-8"} <= lines
    assert not any(line.startswith("LANGUAGE=") for line in lines)


def test_helpers_daemon_block(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    env = {"VMDEBOOTSTRAP_ROOT": str(root)}
    assert sh("disable_daemons", env).returncode == 0
    block = root / customise.POLICY_RC_D
    assert block.read_text().startswith("#!/bin/sh\n")
    assert block.read_text().rstrip().endswith("exit 101")
    assert block.stat().st_mode & 0o777 == 0o755
    assert subprocess.run([str(block)]).returncode == 101
    assert sh("remove_daemon_block; remove_daemon_block", env).returncode == 0
    assert not block.exists()


def test_helpers_leave_foreign_policy_rc_d(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    block = make_script(root / customise.POLICY_RC_D, body="#!/bin/sh\nexit 0\n")
    assert sh("disable_daemons && remove_daemon_block",
              {"VMDEBOOTSTRAP_ROOT": str(root)}).returncode == 0
    assert block.read_text() == "#!/bin/sh\nexit 0\n"


def test_helpers_apt_source_round_trip(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    (root / "etc/apt/sources.list.d/.hidden").write_text("h")
    stubs = fake_commands(tmp_path, ["chroot"])
    env = {"VMDEBOOTSTRAP_ROOT": str(root), "VMDEBOOTSTRAP_DISTRIBUTION": "bookworm",
           "VMDEBOOTSTRAP_COMPONENTS": "main,contrib,non-free-firmware"}
    result = sh("prepare_apt_source http://build.example/debian", env, stubs)
    assert result.returncode == 0, result.stderr
    apt = root / "etc/apt"
    assert (apt / "sources.list").read_text() == (
        "deb http://build.example/debian bookworm main contrib non-free-firmware\n")
    assert list((apt / "sources.list.d").iterdir()) == []
    assert (root / SAVED_SOURCES / "sources.list.d/.hidden").exists()
    assert (tmp_path / "calls").read_text() == f"chroot {root} apt-get -q update\n"

    again = sh("prepare_apt_source http://build.example/debian", env, stubs)
    assert again.returncode == 1 and "replace_apt_source first" in again.stderr

    (root / "var/lib/apt/lists/build_InRelease").write_text("x")
    result = sh("replace_apt_source", env, stubs)
    assert result.returncode == 0, result.stderr
    assert "image.example" in (apt / "sources.list").read_text()
    assert sorted(p.name for p in (apt / "sources.list.d").iterdir()) == [
        ".hidden", "extra.sources"]
    assert not (root / SAVED_SOURCES).exists()
    assert sorted(p.name for p in (root / "var/lib/apt/lists").iterdir()) == ["lock", "partial"]
    assert sh("replace_apt_source", env, stubs).returncode == 1


def test_helpers_prepare_then_python_restore(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    stubs = fake_commands(tmp_path, ["chroot"])
    env = {"VMDEBOOTSTRAP_ROOT": str(root)}
    result = sh("prepare_apt_source http://build.example/debian sid", env, stubs)
    assert result.returncode == 0, result.stderr
    assert (root / "etc/apt/sources.list").read_text() == (
        "deb http://build.example/debian sid main\n")
    assert restore_apt_sources(root) is True
    assert "image.example" in (root / "etc/apt/sources.list").read_text()
    assert (root / "etc/apt/sources.list.d/extra.sources").exists()


def test_helpers_apt_install_argv(tmp_path: Path) -> None:
    stubs = fake_commands(tmp_path, ["chroot"])
    result = sh("apt_install task-xfce-desktop less", {"VMDEBOOTSTRAP_ROOT": str(tmp_path)},
                stubs)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "calls").read_text() == (
        f"chroot {tmp_path} apt-get -y -q -o Dpkg::Use-Pty=0 -o APT::Color=0 "
        "--install-recommends install task-xfce-desktop less\n")
    assert sh("apt_install", {"VMDEBOOTSTRAP_ROOT": str(tmp_path)}, stubs).returncode == 1


# --- vmdebootstrap 1.x's names (common/customise.lib) -------------------------

# Every function 1.x's library defined; its hooks call them by these names.
FUNCTIONS_1X = ["cleanup", "mount_support", "disable_daemons", "prepare_apt_source",
                "remove_daemon_block", "replace_apt_source", "blacklist_qemu_bochs"]


def shells() -> list[str]:
    """sh, and bash if installed: 1.x hooks were often #!/bin/bash."""
    return ["sh"] + (["bash"] if shutil.which("bash") else [])


def fake_mounts(tmp_path: Path) -> Path:
    """mount and umount stubs that log their argv; mountpoint says "not mounted"."""
    stubs = fake_commands(tmp_path, ["mount", "umount"])
    make_script(stubs / "mountpoint", body="#!/bin/sh\nexit 1\n")
    return stubs


@pytest.mark.parametrize("shell", shells())
def test_helpers_define_1x_functions(shell: str) -> None:
    names = " ".join(FUNCTIONS_1X)
    # `command -V` says "NAME is a [shell] function" (bash then prints the body).
    result = subprocess.run(
        [shell, "-c", f'. "{HELPERS}"\nfor f in {names}; do command -V "$f" | head -n 1; done'],
        env={"PATH": os.environ["PATH"]}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(FUNCTIONS_1X)
    assert all(line.startswith(f"{name} is a") and line.endswith("function")
               for name, line in zip(FUNCTIONS_1X, lines, strict=True)), lines


def test_helpers_sourcing_exports_1x_environment(tmp_path: Path) -> None:
    # 1.x hooks run `chroot $rootdir apt-get install` without export_env and
    # often before (or without) setting rootdir: sourcing alone must do it,
    # silently, and must not refuse anything.
    result = subprocess.run(
        ["sh", "-c", f'. "{HELPERS}"\nenv'],
        env={"PATH": os.environ["PATH"], "LANGUAGE": "de", "LC_ALL": "de_DE.UTF-8",
             "LANG": "de_DE.UTF-8"},
        capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == ""
    lines = set(result.stdout.splitlines())
    assert {"DEBIAN_FRONTEND=noninteractive", "DEBCONF_NONINTERACTIVE_SEEN=true",
            "LC_ALL=C.UTF-8", "LANG=C.UTF-8"} <= lines
    assert not any(line.startswith("LANGUAGE=") for line in lines)


def test_helpers_export_env_after_sourcing_is_unchanged(tmp_path: Path) -> None:
    result = sh(f'env >"{tmp_path}/before"; export_env; env >"{tmp_path}/after"; '
                f'cmp "{tmp_path}/before" "{tmp_path}/after"',
                {"VMDEBOOTSTRAP_ROOT": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr


def test_helpers_mount_support_is_mount_proc(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    stubs = fake_mounts(tmp_path)
    calls = tmp_path / "calls"
    env = {"VMDEBOOTSTRAP_ROOT": str(root)}
    assert sh("mount_proc", env, stubs).returncode == 0
    by_mount_proc = calls.read_text()
    calls.unlink()
    result = sh("mount_support", env, stubs)
    assert result.returncode == 0, result.stderr
    assert calls.read_text() == by_mount_proc
    # What 1.x mounted is among it.
    assert f"mount -t proc proc {root}/proc\n" in by_mount_proc
    assert f"mount -t sysfs -o ro sysfs {root}/sys\n" in by_mount_proc


def test_helpers_mount_support_uses_rootdir_set_before_sourcing(tmp_path: Path) -> None:
    # The 1.x way: rootdir=$1, then source the library.
    root = fake_root(tmp_path)
    stubs = fake_mounts(tmp_path)
    full = {"PATH": f"{stubs}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["sh", "-c", f'rootdir=$1\n. "{HELPERS}"\nmount_support', "hook", str(root)],
        env=full, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"{root}/proc" in (tmp_path / "calls").read_text()


def test_helpers_blacklist_qemu_bochs(tmp_path: Path) -> None:
    root = fake_root(tmp_path)  # no etc/modprobe.d yet
    result = sh("umask 077; blacklist_qemu_bochs", {"VMDEBOOTSTRAP_ROOT": str(root)})
    assert result.returncode == 0, result.stderr
    conf = root / "etc/modprobe.d/qemu-blacklist.conf"
    assert conf.read_text() == "blacklist bochs-drm\n"
    assert conf.stat().st_mode & 0o777 == 0o644
    # Again, over what is there, as 1.x's `>` did.
    conf.write_text("blacklist something-else\n")
    assert sh("blacklist_qemu_bochs", {"VMDEBOOTSTRAP_ROOT": str(root)}).returncode == 0
    assert conf.read_text() == "blacklist bochs-drm\n"


def test_helpers_blacklist_qemu_bochs_stays_in_root(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "host.conf"
    target.write_text("host\n")
    modprobe = root / "etc/modprobe.d"
    modprobe.mkdir()
    # A link at the file itself is replaced, not written through.
    (modprobe / "qemu-blacklist.conf").symlink_to(target)
    env = {"VMDEBOOTSTRAP_ROOT": str(root)}
    assert sh("blacklist_qemu_bochs", env).returncode == 0
    assert target.read_text() == "host\n"
    assert not (modprobe / "qemu-blacklist.conf").is_symlink()
    # A directory link that leads out of the root is refused.
    shutil.rmtree(modprobe)
    modprobe.symlink_to(outside)
    result = sh("blacklist_qemu_bochs", env)
    assert result.returncode == 1 and "leads out of the root" in result.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["host.conf"]


@pytest.mark.parametrize("shell", shells())
def test_helpers_1x_hook_runs_unchanged(shell: str, tmp_path: Path) -> None:
    """A 1.x live hook, as written for 1.x, against a fake root."""
    root = fake_root(tmp_path)
    (root / "etc/apt/sources.list.d/base.list").write_text(
        "deb http://image.example/debian stable main\n")
    stubs = fake_mounts(tmp_path)
    make_script(stubs / "chroot", body=(
        f'#!/bin/sh\necho "chroot $* DEBIAN_FRONTEND=$DEBIAN_FRONTEND" >>"{tmp_path}/calls"\n'))
    # The library at 1.x's path is a symbolic link to ours (tools/setup-host).
    lib = tmp_path / "usr/share/vmdebootstrap/common/customise.lib"
    lib.parent.mkdir(parents=True)
    lib.symlink_to(HELPERS)
    hook = make_script(tmp_path / "customise.sh", body=f"""#!/bin/{shell}
set -e
rootdir=$1
# common needs rootdir to already be defined.
. {lib}
trap cleanup 0
mount_support
disable_daemons
prepare_apt_source 'http://build.example/debian' 'stable'
test -x ${{rootdir}}/usr/sbin/policy-rc.d
grep -qx 'deb http://build.example/debian stable main' ${{rootdir}}/etc/apt/sources.list
chroot ${{rootdir}} apt-get -y install task-xfce-desktop
remove_daemon_block
replace_apt_source
blacklist_qemu_bochs
echo "Customisation complete"
""")
    result = subprocess.run([shell, str(hook), str(root), "live"],
                            env={"PATH": f"{stubs}:{os.environ['PATH']}"},
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Customisation complete\n"
    calls = (tmp_path / "calls").read_text().splitlines()
    assert f"chroot {root} apt-get -q update DEBIAN_FRONTEND=noninteractive" in calls
    assert (f"chroot {root} apt-get -y install task-xfce-desktop "
            "DEBIAN_FRONTEND=noninteractive") in calls
    assert f"mount -t proc proc {root}/proc" in calls
    apt = root / "etc/apt"
    assert "image.example/debian bookworm" in (apt / "sources.list").read_text()
    assert (apt / "sources.list.d/base.list").exists()
    assert not (root / SAVED_SOURCES).exists()
    assert not (root / customise.POLICY_RC_D).exists()
    assert (root / "etc/modprobe.d/qemu-blacklist.conf").read_text() == "blacklist bochs-drm\n"
