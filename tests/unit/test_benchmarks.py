"""The benchmark's pure parts: command lines, log parsing, ratios, reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from benchmarks import commands as cmd
from benchmarks import run
from benchmarks.bench import compare_manifests, manifest
from benchmarks.harness import headline
from benchmarks.report import (
    CompressionResult,
    Figure,
    compression_table,
    format_table,
    ratio,
    recommend,
    summary_table,
)

MIRROR = "http://mirror.example/debian/"
PACKAGES = ["linux-image-amd64", "live-boot", "systemd-sysv", "acpid", "sudo"]

LOG = """\
2025-01-01 10:00:00 INFO Bootstrapping bookworm amd64 with mmdebstrap
2025-01-01 10:00:01 DEBUG + mmdebstrap --version
2025-01-01 10:00:02 DEBUG + mmdebstrap --mode=root --architectures=amd64 --variant=minbase \
--components=main --include=linux-image-amd64,live-boot,systemd-sysv,acpid,sudo \
'--aptopt=Acquire::Retries 3' --dpkgopt=force-unsafe-io --skip=essential/unlink \
'--setup-hook=mkdir -p "$1/var/cache/apt/archives" && true' \
'--customize-hook=sync-out /var/cache/apt/archives /tmp/w/debs' \
bookworm /tmp/vmdebootstrap-x/root http://mirror.example/debian/
2025-01-01 10:00:03 DEBUG mmdebstrap: I: downloading packages with apt...
  a continuation line without a timestamp
2025-01-01 10:01:32 DEBUG mmdebstrap: I: success in 90 seconds
2025-01-01 10:01:33 INFO package cache: 120 new packages stored
2025-01-01 10:01:34 DEBUG + tar --create --file /c/roots/x.part .
2025-01-01 10:01:40 INFO root cache: stored 0123
2025-01-01 10:01:40 INFO Configuring the system
"""


def test_ours_args_give_the_briefs_build() -> None:
    args = cmd.ours_args([("squash", Path("/w/out"))], mirror=MIRROR, log=Path("/w/l.log"),
                         cache_dir=Path("/w/cache"), hook=Path("/w/hook.sh"))
    text = " ".join(args)
    assert args[0] == "--no-default-configs"
    for part in ("--squash /w/out", "--distribution bookworm", f"--mirror {MIRROR}",
                 "--debootstrapopts variant=minbase", "--package sudo",
                 "--squash-compression zstd", "--cache-dir /w/cache",
                 "--customize /w/hook.sh", "--verbose", "--log /w/l.log"):
        assert part in text
    assert "--no-cache" not in args


def test_ours_args_without_cache_and_with_two_outputs() -> None:
    args = cmd.ours_args([("squash", Path("/d")), ("iso", Path("/x.iso"))], mirror=MIRROR,
                         log=Path("/l"), cache_dir=None)
    assert "--no-cache" in args and "--cache-dir" not in args
    assert args[1:5] == ["--squash", "/d", "--iso", "/x.iso"]


def test_dry_run_args_drop_the_log() -> None:
    args = ["--squash", "/d", "--log", "/l", "--verbose"]
    assert cmd.dry_run_args(args) == ["--squash", "/d", "--verbose", "--dry-run"]


def test_packages_from_the_dry_run() -> None:
    text = "dry run: nothing is changed\npackages: linux-image-amd64, live-boot, sudo\n"
    assert cmd.parse_dry_run_packages(text) == ["linux-image-amd64", "live-boot", "sudo"]
    assert cmd.parse_dry_run_packages("packages: (none)\n") == []
    with pytest.raises(ValueError):
        cmd.parse_dry_run_packages("nothing here")


def test_plain_tools_install_the_same_packages() -> None:
    root = Path("/w/root")
    deb = cmd.debootstrap_argv(PACKAGES, root, MIRROR)
    mm = cmd.mmdebstrap_argv(PACKAGES, root, MIRROR)
    include = "--include=" + ",".join(PACKAGES)
    assert deb[0] == "debootstrap" and "--variant=minbase" in deb and include in deb
    assert mm[0] == "mmdebstrap" and "--variant=minbase" in mm and include in mm
    assert deb[-3:] == mm[-3:] == ["bookworm", "/w/root", MIRROR]


def test_mksquashfs_argv() -> None:
    argv = cmd.mksquashfs_argv(Path("/r"), Path("/o.sq"), ("-comp", "zstd"), 2)
    assert argv == ["mksquashfs", "/r", "/o.sq", "-noappend", "-no-progress", "-comp", "zstd",
                    "-processors", "2"]


def test_compressor_sets() -> None:
    assert [c.name for c in cmd.compressors(quick=True)] == list(cmd.QUICK_COMPRESSORS)
    full = {c.name: c for c in cmd.compressors(quick=False)}
    assert len(full) == 9
    assert full["xz -b 1M"].option == "xz" and full["xz"].option is None
    assert full["zstd:19"].args[-2:] == ("-Xcompression-level", "19")


def test_log_parsing_gives_the_bootstrap_stage() -> None:
    entries = cmd.parse_log(LOG)
    assert entries[0].time == datetime(2025, 1, 1, 10, 0, 0)
    stage = cmd.bootstrap_stage(entries)
    assert stage == {"stage_s": 100.0, "mmdebstrap_s": 90.0, "cache_lookup_s": 2.0,
                     "cache_store_s": 6.0}


def test_span_between_log_lines() -> None:
    entries = cmd.parse_log(LOG)
    assert cmd.span(entries, "+ tar --create", "root cache: stored") == 6.0
    assert cmd.span(entries, "Configuring", "Bootstrapping") is None
    assert cmd.span(entries, "nothing", "Configuring") is None


def test_stage_ends_at_configuring_without_a_cache() -> None:
    log = ("2025-01-01 10:00:00 INFO Bootstrapping bookworm\n"
           "2025-01-01 10:00:50 INFO Configuring the system\n")
    stage = cmd.bootstrap_stage(cmd.parse_log(log))
    assert stage["stage_s"] == 50.0 and stage["mmdebstrap_s"] is None


def test_plain_mmdebstrap_from_our_log_drops_the_cache_hooks() -> None:
    argv = cmd.mmdebstrap_argv_from_log(cmd.parse_log(LOG))
    plain = cmd.plain_from_ours(argv, Path("/w/plain"))
    assert plain[0] == "mmdebstrap" and "--aptopt=Acquire::Retries 3" in plain
    assert not any(cmd.is_cache_arg(a) for a in plain)
    assert len(argv) - len(plain) == 3
    assert plain[-3:] == ["bookworm", "/w/plain", MIRROR]
    with pytest.raises(ValueError):
        cmd.mmdebstrap_argv_from_log([])


def test_live_build_config() -> None:
    argv = cmd.lb_config_argv(MIRROR)
    pairs = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert argv[:2] == ["lb", "config"]
    assert pairs["--distribution"] == "bookworm"
    assert pairs["--binary-images"] == "iso-hybrid"
    assert pairs["--apt-recommends"] == "false"
    assert pairs["--debian-installer"] == "none"
    assert pairs["--mirror-bootstrap"] == pairs["--mirror-binary"] == MIRROR
    assert pairs["--bootappend-live"] == "boot=live components"
    assert pairs["--chroot-squashfs-compression-type"] == "zstd"
    assert cmd.lb_package_list(PACKAGES) == "live-boot\nsystemd-sysv\nacpid\nsudo\n"


def test_redact_hides_the_mirror_everywhere() -> None:
    data = {"a": [MIRROR + "dists", {"b": f"x {MIRROR}"}], "n": 3}
    assert cmd.redact(data, MIRROR) == {"a": ["$MIRRORdists", {"b": "x $MIRROR"}], "n": 3}


def test_rusage_wrapper_reports_self_and_children(tmp_path: Path) -> None:
    out = tmp_path / "usage.json"
    argv = cmd.wrapped(sys.executable, ["--version"])
    env = {**os.environ, "VMDEB_BENCH_RUSAGE": str(out)}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    usage = json.loads(out.read_text())
    assert usage["self_maxrss_kib"] > 1000
    assert set(usage) == {"self_maxrss_kib", "children_maxrss_kib", "self_cpu_s",
                          "children_cpu_s"}


def test_headline_of_a_failure() -> None:
    assert headline(["E: stage config needed\n", "E: exiting\n", "Reading lists...\n"]) \
        == "E: exiting"
    assert headline(["x\n", "vmdebootstrap: error: mksquashfs failed\n", "\n"]) \
        == "vmdebootstrap: error: mksquashfs failed"
    assert headline(["first\n", "last\n", "  \n"]) == "last"
    assert headline([]) == ""


# --- ratios, targets, tables ------------------------------------------------------

def test_ratio() -> None:
    assert ratio(30, 120) == 0.25
    assert ratio(None, 1) is None and ratio(1, None) is None
    assert ratio(1, 0) is None


@pytest.mark.parametrize(("value", "target", "status"), [
    (1.04, ("<=", 1.05), "met"),
    (1.05, ("<=", 1.05), "met"),
    (1.06, ("<=", 1.05), "missed"),
    (59.9, ("<", 60), "met"),
    (60.0, ("<", 60), "missed"),
    ("identical", ("==", "identical"), "met"),
    ("differ", ("==", "identical"), "missed"),
    (None, ("<=", 1.05), "n/a"),
    ("skipped: our --iso failed", ("<=", 0.5), "n/a"),
    (12.0, None, "-"),
])
def test_figure_status(value: float | str | None, target: tuple[str, float | str] | None,
                       status: str) -> None:
    assert Figure("x", "n", value, "x", target=target).status == status


def test_summary_table() -> None:
    figures = [Figure("a2", "ratio ours/plain", 1.0312, "x", target=("<=", 1.05)),
               Figure("b", "warm", 71.26, "s", target=("<", 60)),
               Figure("c", "ours --iso", "skipped: not yet")]
    lines = summary_table(figures).splitlines()
    assert lines[0].split() == ["figure", "value", "target", "met/missed"]
    assert "1.03 x" in lines[2] and "<= 1.05 x" in lines[2] and lines[2].endswith("met")
    assert "71.3 s" in lines[3] and "< 60.0 s" in lines[3] and lines[3].endswith("missed")
    assert "skipped: not yet" in lines[4]


def test_format_table_aligns_columns() -> None:
    text = format_table(["a", "bb"], [["xxx", "y"], ["z", "wwww"]])
    lines = text.splitlines()
    assert lines[1] == "---  ----"
    assert lines[2] == "xxx  y"
    assert lines[3] == "z    wwww"


def test_figure_as_dict_has_status_and_target() -> None:
    d = Figure("b", "warm", 20.0, "s", target=("<", 60)).as_dict()
    assert d["status"] == "met" and d["target"] == "< 60.0 s" and d["value"] == 20.0


def results(*rows: tuple[str, float, int]) -> list[CompressionResult]:
    return [CompressionResult(n, t, s * 2**20, n) for n, t, s in rows]


def test_recommend_the_fastest_within_tolerance_of_xz() -> None:
    rows = results(("xz", 100, 100), ("zstd", 30, 112), ("zstd:3", 10, 130), ("lz4", 5, 160))
    rec = recommend(rows)
    assert rec.choice is not None and rec.choice.name == "zstd"
    assert rec.candidates == ["xz", "zstd"]
    assert "zstd" in rec.line() and "1.12 x the size" in rec.line()


def test_recommend_without_xz_uses_the_smallest() -> None:
    rec = recommend(results(("zstd", 30, 110), ("gzip", 20, 120), ("lz4", 5, 160)))
    assert rec.reference is not None and rec.reference.name == "zstd"
    assert rec.choice is not None and rec.choice.name == "gzip"
    assert recommend([]).choice is None


def test_compression_table() -> None:
    text = compression_table(results(("xz", 100, 100), ("lz4", 5, 160)))
    assert "1.60" in text and "0.05" in text


# --- reproducibility diff and CLI -----------------------------------------------------

def test_manifest_comparison(tmp_path: Path) -> None:
    for name, content in (("one", "a"), ("two", "b")):
        root = tmp_path / name
        (root / "etc").mkdir(parents=True)
        (root / "etc" / "same").write_text("same")
        (root / "etc" / "motd").write_text(content)
        os.utime(root / "etc" / "same", (1000, 1000))
        os.utime(root / "etc" / "motd", (1000, 1000))
        os.utime(root / "etc", (1000, 1000))
    (tmp_path / "two" / "extra").symlink_to("etc")
    diffs = compare_manifests(manifest(tmp_path / "one"), manifest(tmp_path / "two"))
    assert diffs == ["etc/motd: content", "extra: only in the second build"]


def test_selected_measurements() -> None:
    assert run.selected(None, quick=True) == list(run.QUICK)
    assert run.selected(None, quick=False) == list(run.ALL)
    assert run.selected("f,a2, b", quick=False) == ["a2", "b", "f"]
    with pytest.raises(SystemExit):
        run.selected("a,zz", quick=False)


def test_child_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    env = run.child_env(tmp_path)
    assert "SOURCE_DATE_EPOCH" not in env
    assert env["TMPDIR"] == str(tmp_path / "tmp")
    assert "/usr/sbin" in env["PATH"].split(":")
