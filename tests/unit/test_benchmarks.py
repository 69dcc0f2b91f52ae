"""The benchmark's pure parts: command lines, log parsing, ratios, reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from benchmarks import commands as cmd
from benchmarks import markdown as md
from benchmarks import run
from benchmarks.bench import compare_manifests, manifest
from benchmarks.harness import headline
from benchmarks.measures import remove_downloaded_debs
from benchmarks.report import (
    CompressionResult,
    CompressionRun,
    Figure,
    Stats,
    compression_result,
    compression_table,
    format_table,
    ratio,
    recommend,
    show,
    stats,
    stats_of,
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
               Figure("b", "warm", stats([71.26, 70.1, 75.0]), "s", target=("<", 60)),
               Figure("c", "ours --iso", "skipped: not yet")]
    lines = summary_table(figures).splitlines()
    assert lines[0].split() == ["figure", "median", "min", "max", "n", "target", "met/missed"]
    assert "1.03 x" in lines[2] and "<= 1.05 x" in lines[2] and lines[2].endswith("met")
    assert lines[2].split()[5:8] == ["-", "-", "-"]
    assert lines[3].split()[2:9] == ["71.3", "s", "70.1", "s", "75.0", "s", "3"]
    assert "< 60.0 s" in lines[3]
    assert lines[3].endswith("missed")
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
    return [compression_result(n, [t], [s * 2**20], n) for n, t, s in rows]


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


def test_recommend_judges_median_times() -> None:
    # gzip's one slow run must not hide that it is usually faster than zstd.
    rows = [compression_result("xz", [100, 100, 100], [100] * 3),
            compression_result("zstd", [30, 31, 29], [105] * 3),
            compression_result("gzip", [20, 90, 21], [110] * 3)]
    rec = recommend(rows)
    assert rec.choice is not None and rec.choice.name == "gzip"


def test_compression_table() -> None:
    text = compression_table(results(("xz", 100, 100), ("lz4", 5, 160)))
    assert "1.60" in text and "0.05" in text


def test_compression_table_shows_the_time_spread_and_a_varying_size() -> None:
    rows = [compression_result("xz", [124, 120, 130], [2**20 * 174] * 3, None),
            compression_result("lz4", [1.8, 2.0, 1.9], [2**20 * 322, 2**20 * 323, 2**20 * 322],
                               "lz4")]
    lines = compression_table(rows).splitlines()
    assert lines[0].split()[:6] == ["compressor", "time", "s", "min", "max", "n"]
    assert lines[2].split()[:6] == ["xz", "124", "120", "130", "3", "174.0"]
    assert "(n/a)" in lines[2]
    assert lines[3].split()[:6] == ["lz4", "1.9", "1.8", "2.0", "3", "322.0"]
    assert "(min 322.0, max 323.0)" in lines[3]
    assert not rows[0].size_varies and rows[1].size_varies


# --- repeated measurements ------------------------------------------------------------

def test_stats_of_an_odd_number_of_samples() -> None:
    s = stats([240, 225, 231])
    assert (s.median, s.min, s.max, s.n) == (231, 225, 240, 3)
    assert s.samples == (240, 225, 231)  # in the order they were taken


def test_stats_of_an_even_number_takes_the_mean_of_the_middle_two() -> None:
    s = stats([10, 40, 20, 30])
    assert (s.median, s.min, s.max, s.n) == (25, 10, 40, 4)


def test_stats_of_one_sample() -> None:
    assert stats([7.5]) == Stats(7.5, 7.5, 7.5, 1, (7.5,))


def test_stats_need_a_sample() -> None:
    with pytest.raises(ValueError):
        stats([])
    assert stats_of([None, None]) is None
    assert stats_of([None, 3.0, 1.0]) == stats([3.0, 1.0])


def test_stats_are_frozen() -> None:
    with pytest.raises(AttributeError):
        stats([1]).median = 2  # type: ignore[misc]


def test_a_figure_shows_its_median_with_min_and_max() -> None:
    assert show(stats([231, 225, 240]), "s") == "231 s (min 225, max 240, n=3)"
    assert show(stats([12.34, 12.1, 12.9]), "s") == "12.3 s (min 12.1, max 12.9, n=3)"
    assert show(stats([210.0, 200.0]), "MiB") == "205.0 MiB (min 200.0, max 210.0, n=2)"
    assert show(stats([44.0]), "s") == "44.0 s (n=1)"
    assert show(0.512, "x") == "0.51 x"
    assert show(None, "s") == "-"


def test_targets_and_ratios_use_the_medians() -> None:
    # One slow run (90 s) is above the target; the median (50 s) is not.
    warm = Figure("b", "warm", stats([50, 90, 45]), "s", target=("<", 60))
    assert warm.status == "met"
    assert ratio(stats([50, 90, 45]), stats([200, 100, 300])) == 0.25
    d = warm.as_dict()
    assert d["value"] == {"median": 50.0, "min": 45.0, "max": 90.0, "n": 3,
                          "samples": (50.0, 90.0, 45.0)}
    assert d["status"] == "met" and d["target"] == "< 60.0 s"


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


def test_runs_defaults_to_three() -> None:
    assert run.parse_args([]).runs == 3
    assert run.parse_args(["--runs", "1"]).runs == 1
    args = run.parse_args(["--quick", "--runs", "5"])
    assert args.quick and args.runs == 5 and args.selected == list(run.QUICK)


@pytest.mark.parametrize(("value", "why"), [("0", "must be at least 1 (got 0)"),
                                            ("-2", "must be at least 1 (got -2)"),
                                            ("two", "not a whole number: 'two'")])
def test_runs_must_be_a_positive_whole_number(value: str, why: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run.parse_args(["--runs", value])
    assert exc.value.code == 2
    assert f"argument --runs: {why}" in capsys.readouterr().err


def test_command_line_names_the_venv_python_relative_to_the_checkout() -> None:
    python = str(run.REPO / ".venv" / "bin" / "python")
    assert run.command_line(["--runs", "3", "--markdown", "out put.md"], python) == \
        ".venv/bin/python benchmarks/run.py --runs 3 --markdown 'out put.md'"
    assert run.command_line([], "/usr/bin/python3") == "/usr/bin/python3 benchmarks/run.py"


def test_missing_readme_markers_stop_the_run_before_any_build(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    monkeypatch.setattr(run, "README", readme)
    assert run.main(["--update-readme"]) == 2
    assert "--update-readme: README.md must hold the lines" in capsys.readouterr().err
    readme.write_text(f"x\n{md.BEGIN}\nold\n{md.END}\n")
    assert run.check_outputs(run.parse_args(["--update-readme"])) is None
    missing = tmp_path / "nowhere" / "t.md"
    assert run.check_outputs(run.parse_args(["--markdown", str(missing)])) == \
        f"--markdown: no directory {missing.parent}"


def test_child_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    env = run.child_env(tmp_path)
    assert "SOURCE_DATE_EPOCH" not in env
    assert env["TMPDIR"] == str(tmp_path / "tmp")
    assert "/usr/sbin" in env["PATH"].split(":")


# --- plain debootstrap's downloaded .debs -------------------------------------------------

def test_the_downloaded_debs_are_removed_and_nothing_else(tmp_path: Path) -> None:
    root = tmp_path / "root"
    archives = root / "var/cache/apt/archives"
    (archives / "partial").mkdir(parents=True)
    (archives / "sudo_1.9_amd64.deb").write_bytes(b"x" * 100)
    (archives / "acpid_2.0_amd64.deb").write_bytes(b"x" * 28)
    (archives / "lock").write_text("")
    (root / "usr").mkdir()
    (root / "usr" / "keep.deb").write_text("not in the apt cache")
    assert remove_downloaded_debs(root) == (2, 128)
    assert sorted(p.name for p in archives.iterdir()) == ["lock", "partial"]
    assert (root / "usr" / "keep.deb").exists()
    assert remove_downloaded_debs(root) == (0, 0)
    assert remove_downloaded_debs(tmp_path / "no-such-root") == (0, 0)


def test_a_debs_dir_pointing_out_of_the_tree_is_left_alone(tmp_path: Path) -> None:
    outside = tmp_path / "host-archives"
    outside.mkdir()
    (outside / "hosts.deb").write_text("the host's")
    root = tmp_path / "root"
    (root / "var/cache/apt").mkdir(parents=True)
    (root / "var/cache/apt/archives").symlink_to(outside)
    with pytest.raises(ValueError, match="points outside"):
        remove_downloaded_debs(root)
    assert (outside / "hosts.deb").exists()


# --- Markdown report and the README's tables ------------------------------------------------

FACTS = md.HostFacts("Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz", 2, 7.75, "6.1.0-18-amd64",
                     "12.5", 0.12)
WHEN = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def test_host_facts_parsers() -> None:
    cpuinfo = ("processor\t: 0\nvendor_id\t: GenuineIntel\n"
               "model name\t: Intel(R)  Xeon(R) CPU @ 2.40GHz\nprocessor\t: 1\n")
    assert md.cpu_model(cpuinfo) == "Intel(R) Xeon(R) CPU @ 2.40GHz"
    assert md.cpu_model("processor : 0\nHardware : BCM2835\n") == "BCM2835"
    assert md.cpu_model("") == "unknown CPU"
    assert md.memory_gib("MemTotal:        8126464 kB\nMemFree: 1 kB\n") == 7.75
    assert md.memory_gib("") is None


def test_measured_line_says_when_where_and_how() -> None:
    line = md.measured_line(FACTS, WHEN, ".venv/bin/python benchmarks/run.py --update-readme")
    assert line == ("Measured 2025-03-04 05:06 UTC on Intel(R) Xeon(R) CPU E5-2680 v4 @ "
                    "2.40GHz (2 CPUs, 7.8 GiB memory), kernel 6.1.0-18-amd64, Debian 12.5, "
                    "load average 0.12 at the start, with "
                    "`.venv/bin/python benchmarks/run.py --update-readme` (as root).")


def report() -> str:
    figures = [Figure("a", "ours cold --squash", stats([231, 225, 240]), "s",
                      note="squashfs 200.0 MiB"),
               Figure("a", "ratio ours/debootstrap", 0.8123, "x"),
               Figure("b", "ours warm --squash (hook changed)", stats([40, 42]), "s",
                      target=("<", 60), note="a | in a note"),
               Figure("c", "ratio ours cold/lb cold", "skipped: our --iso failed",
                      target=("<=", 0.5))]
    compression = CompressionRun("plain debootstrap's tree from (a)", 2, [
        compression_result("xz", [124, 120, 130], [174 * 2**20] * 3),
        compression_result("zstd:6", [4.0, 4.2, 3.9], [190 * 2**20] * 3, "zstd:6")])
    measured = md.measured_line(FACTS, WHEN, "python benchmarks/run.py")
    return md.render(figures, compression, ["machine busy at the end"], measured)


def test_markdown_report() -> None:
    text = report()
    lines = text.splitlines()
    assert lines[0].startswith("Measured 2025-03-04 05:06 UTC on Intel(R) Xeon(R)")
    assert "median of n runs" in text and "ratios are of the medians" in text
    assert ("| figure | median | min | max | n | target | met/missed | note |\n"
            "|---|---|---|---|---|---|---|---|\n"
            "| (a) ours cold --squash | 231 s | 225 s | 240 s | 3 | - | - "
            "| squashfs 200.0 MiB |\n"
            "| (a) ratio ours/debootstrap | 0.81 x | - | - | - | - | - |  |\n"
            "| (b) ours warm --squash (hook changed) | 41.0 s | 40.0 s | 42.0 s | 2 "
            "| < 60.0 s | met | a \\| in a note |\n"
            "| (c) ratio ours cold/lb cold | skipped: our --iso failed | - | - | - "
            "| <= 0.5 | n/a |  |\n") in text
    assert "(e) compression: mksquashfs of plain debootstrap's tree from (a)" in text
    assert ("| compressor | time s | min | max | n | size MiB | size/xz | time/xz "
            "| --squash-compression |") in text
    assert "| xz | 124 | 120 | 130 | 3 | 174.0 | 1.00 | 1.00 | (n/a) |" in text
    assert "| zstd:6 | 4.0 | 3.9 | 4.2 | 3 | 190.0 | 1.09 | 0.03 | zstd:6 |" in text
    assert "recommendation: zstd:6 (--squash-compression zstd:6)" in text
    assert text.endswith("Notes:\n\n- machine busy at the end\n")


def test_markdown_report_without_compression_or_notes() -> None:
    text = md.render([Figure("d", "max RSS", stats([50.0]), "MiB")], None, [], "Measured x")
    assert "compression" not in text and "Notes" not in text
    assert "| (d) max RSS | 50.0 MiB | 50.0 MiB | 50.0 MiB | 1 | - | - |  |" in text


def test_readme_block_replacement(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Benchmarks\n\n{md.BEGIN}\nnot measured yet\n{md.END}\n\n"
                      "## Development\n")
    body = report()
    assert md.update_readme(readme, body)
    once = readme.read_text()
    assert f"{md.BEGIN}\nMeasured 2025-03-04" in once
    assert once.endswith(f"- machine busy at the end\n{md.END}\n\n## Development\n")
    assert "not measured yet" not in once
    assert not md.update_readme(readme, body)  # idempotent
    assert readme.read_text() == once
    assert md.replace_block(once, body) == once


@pytest.mark.parametrize("text", [
    "no markers\n",
    f"{md.BEGIN}\nonly the first\n",
    f"only the last\n{md.END}\n",
    f"{md.END}\nin the wrong order\n{md.BEGIN}\n",
    f"{md.BEGIN}\n{md.END}\n{md.BEGIN}\n{md.END}\n",
])
def test_readme_markers_missing_is_an_error(text: str, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(text)
    with pytest.raises(ValueError, match="must hold the lines"):
        md.update_readme(readme, "tables")
    assert readme.read_text() == text


def test_the_projects_readme_has_the_markers_in_its_benchmarks_section() -> None:
    text = run.README.read_text()
    section = text[text.index("\n## Benchmarks\n"):]
    section = section[:section.index("\n## ", 1)]
    assert md.replace_block(section, "x").count(md.BEGIN) == 1


# --- phases and the Speed issue's targets ---------------------------------------------------

PHASE_LOG = """\
2026-12-02 19:10:11 DEBUG phase release: 0.222 s
2026-12-02 19:10:11 INFO root cache: miss (no cached root for bookworm amd64 yet)
2026-12-02 19:11:50 DEBUG phase bootstrap: 99.5 s
2026-12-02 19:11:50 DEBUG phase cache-store: 0.001 s
2026-12-02 19:11:50 DEBUG phase cache-use: 0.004 s
2026-12-02 19:11:52 DEBUG phase hook: 2.360 s
2026-12-02 19:11:52 DEBUG phase squashfs: 41.0 s
2026-12-02 19:11:52 DEBUG phase squashfs: 0.5 s
2026-12-02 19:11:52 DEBUG phase Not-A-Phase: 1 s
"""


def test_phases_are_summed_in_the_order_they_first_appear() -> None:
    found = cmd.phases(cmd.parse_log(PHASE_LOG))
    assert list(found) == ["release", "bootstrap", "cache-store", "cache-use", "hook",
                           "squashfs"]
    assert found["squashfs"] == pytest.approx(41.5)


def test_bootstrap_stage_prefers_the_phase_lines() -> None:
    stage = cmd.bootstrap_stage(cmd.parse_log(PHASE_LOG))
    assert stage["stage_s"] == pytest.approx(0.222 + 99.5 + 0.001 + 0.004)
    assert stage["mmdebstrap_s"] == pytest.approx(99.5)
    assert stage["cache_store_s"] == pytest.approx(0.001)


def test_ours_args_default_compressor_and_layered(tmp_path: Path) -> None:
    args = cmd.ours_args([("squash", tmp_path / "sq")], mirror="http://m.example/debian",
                         log=tmp_path / "log", cache_dir=tmp_path / "c", compression=None,
                         layered=True)
    assert "--squash-compression" not in args and "--layered" in args
    assert "--squash-compression" in cmd.ours_args(
        [("squash", tmp_path / "sq")], mirror="http://m.example/debian", log=tmp_path / "log",
        cache_dir=None)


def test_phase_table_has_medians_other_and_total() -> None:
    from benchmarks.report import phase_medians, phase_rows

    runs = {"warm": [(10.0, {"hook": 1.0, "squashfs": 5.0}),
                     (12.0, {"hook": 3.0, "squashfs": 7.0}),
                     (11.0, {"hook": 2.0})]}
    medians = phase_medians(runs)["warm"]
    assert medians == {"hook": 2.0, "squashfs": 5.0, "other": 4.0, "total": 11.0}
    headers, rows = phase_rows(runs)
    assert headers == ["build", "n", "hook", "squashfs", "other", "total"]
    assert rows == [["warm", "3", "2.0", "5.0", "4.0", "11.0"]]
    text = md.render([], None, [], "measured", runs)
    assert "| warm | 3 | 2.0 | 5.0 | 4.0 | 11.0 |" in text


def test_the_speed_targets() -> None:
    from benchmarks.measures import A_TARGETS, WARM_VARIANTS

    assert A_TARGETS == {"debootstrap": 0.95, "mmdebstrap": 1.05}
    assert [(v.compression, v.layered, v.limit) for v in WARM_VARIANTS] == [
        (None, False, None), ("zstd:6", False, 20.0), (None, True, 20.0)]
    assert run.HEADLINE_TARGETS["c"] == ("<=", 0.4)


def test_ours_args_for_another_architecture_with_extra_options() -> None:
    args = cmd.ours_args([("iso", Path("/x.iso"))], mirror=MIRROR, log=Path("/l"),
                         cache_dir=None, arch="arm64", extra=("--user", "user/live"))
    assert args[args.index("--arch") + 1] == "arm64"
    assert args[-5:] == ["--user", "user/live", "--verbose", "--log", "/l"]


def test_foreign_isos_are_judged_against_the_amd64_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(g): a cold and a warm ISO per architecture, in rounds of amd64, i386,
    arm64; the arm64 ratio and its warm rebuild carry the issue's targets."""
    from benchmarks import foreign

    seconds = {"cold": {"amd64": 100.0, "i386": 50.0, "arm64": 250.0},
               "warm": {"amd64": 20.0, "i386": 15.0, "arm64": 30.0}}
    order: list[str] = []

    class FakeBench:
        runs = 1

        def dir(self, name: str) -> Path:
            path = tmp_path / name
            path.mkdir()
            return path

        def write_hook(self, path: Path, text: str) -> Path:
            path.write_text(text)
            return path

        def ours(self, label: str, outputs: list[tuple[str, Path]], **kw: object) -> object:
            kind = label.split("-")[1]
            order.append(f"{kind} {kw['arch']}")
            outputs[0][1].write_bytes(b"\0" * 2**20)
            value = seconds[kind][str(kw["arch"])]
            return type("Run", (), {"seconds": value})()

        def drop(self, path: Path) -> None:
            pass

        details: dict[str, object] = {}

    monkeypatch.setattr(foreign, "login_time", lambda iso, arch: (60.0, None))
    figures = {f.name: f for f in foreign.measure_g(FakeBench())}  # type: ignore[arg-type]
    assert order == ["cold amd64", "warm amd64", "cold i386", "warm i386",
                     "cold arm64", "warm arm64"]
    headline = figures["ratio arm64 cold/amd64 cold"]
    assert headline.value == 2.5 and headline.target == ("<=", 3.0)
    assert headline.status == "met"
    assert figures["ours warm --iso arm64, hook changed"].target == ("<=", 120.0)
    assert figures["ours warm --iso amd64, hook changed"].target is None
    assert "ISO 1.0 MiB; login after 60 s (uefi, TCG)" in figures["ours cold --iso arm64"].note
    assert run.HEADLINE_TARGETS["g"] == ("<=", 3.0)
