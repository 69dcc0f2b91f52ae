"""1.x style INI config files: reading, precedence, --dump-config round trip."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.conftest import MIRROR, SECRET
from vmdebootstrap import cli
from vmdebootstrap.errors import UsageError
from vmdebootstrap.intent.config_files import default_config_files, dump_config, read_config
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan import Host, Plan, make_plan


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def settings_of(*argv: str) -> Settings:
    return cli.parse([*argv, "--no-default-configs"])[0]


def problems(*argv: str) -> list[str]:
    with pytest.raises(UsageError) as info:
        settings_of(*argv)
    return info.value.problems


# --- reading -----------------------------------------------------------------


def test_values_are_converted(tmp_path: Path) -> None:
    conf = write(tmp_path / "vm.conf", f"""\
[config]
tarball = root.tar.gz
sudo = yes
enable-dhcp = no
package = sudo, less
debootstrapopts = variant=minbase components=main,contrib
size = 4G
hook-timeout = 60
mirror = {MIRROR}
""")
    s = settings_of("--config", str(conf))
    assert s.tarball == "root.tar.gz"
    assert s.sudo is True and s.enable_dhcp is False
    assert s.package == ("sudo", "less")
    assert s.debootstrapopts == ("variant=minbase", "components=main,contrib")
    assert s.size == 4 * 10**9
    assert s.hook_timeout == 60
    assert s.mirror == MIRROR
    assert s.config_files == (str(conf),)


@pytest.mark.parametrize(("text", "expected"), [
    ("yes", True), ("no", False), ("true", True), ("False", False), ("on", True), ("0", False),
])
def test_booleans(tmp_path: Path, text: str, expected: bool) -> None:
    conf = write(tmp_path / "vm.conf", f"[config]\nsudo = {text}\n")
    assert settings_of("--config", str(conf)).sudo is expected


def test_bad_boolean_names_key_and_file(tmp_path: Path) -> None:
    conf = write(tmp_path / "vm.conf", "[config]\nsudo = perhaps\n")
    (problem,) = problems("--config", str(conf))
    assert "'sudo'" in problem and str(conf) in problem and "perhaps" in problem


def test_keys_with_underscores(tmp_path: Path) -> None:
    conf = write(tmp_path / "vm.conf",
                 f"[config]\napt_mirror = {MIRROR}\nconfigure_apt = yes\nno_kernel = yes\n")
    s = settings_of("--config", str(conf))
    assert s.apt_mirror == MIRROR and s.configure_apt and s.no_kernel


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    conf = write(tmp_path / "vm.conf", "[config]\nsudo = yes\nfrobnicate = 1\n")
    (problem,) = problems("--config", str(conf))
    assert "frobnicate" in problem and str(conf) in problem


@pytest.mark.parametrize("key", ["config", "dump-config", "no-default-configs",
                                 "config-files"])
def test_command_line_only_keys_refused(tmp_path: Path, key: str) -> None:
    conf = write(tmp_path / "vm.conf", f"[config]\n{key} = x\n")
    (problem,) = problems("--config", str(conf))
    assert f"unknown key '{key}'" in problem


def test_missing_config_section(tmp_path: Path) -> None:
    conf = write(tmp_path / "vm.conf", "[settings]\nsudo = yes\n")
    (problem,) = problems("--config", str(conf))
    assert str(conf) in problem and "no [config] section" in problem


def test_no_section_header_at_all(tmp_path: Path) -> None:
    conf = write(tmp_path / "vm.conf", "sudo = yes\n")
    (problem,) = problems("--config", str(conf))
    assert problem == (f"--config: {conf} line 1: 'sudo = yes' comes before any section: "
                       "start the file with a [config] line")


def test_other_sections_refused(tmp_path: Path) -> None:
    conf = write(tmp_path / "vm.conf", "[config]\nsudo = yes\n[extra]\nx = 1\n")
    (problem,) = problems("--config", str(conf))
    assert "[extra]" in problem


def test_duplicate_key_refused(tmp_path: Path) -> None:
    conf = write(tmp_path / "vm.conf", "[config]\nsudo = yes\nsudo = no\n")
    (problem,) = problems("--config", str(conf))
    assert str(conf) in problem and "sudo" in problem


def test_missing_file(tmp_path: Path) -> None:
    (problem,) = problems("--config", str(tmp_path / "none.conf"))
    assert problem == f"--config: {tmp_path / 'none.conf'}: no such file"


def test_undecodable_file(tmp_path: Path) -> None:
    conf = tmp_path / "vm.conf"
    conf.write_bytes(b"[config]\nhostname = \xff\n")
    (problem,) = problems("--config", str(conf))
    assert "cannot read" in problem


def test_all_problems_of_a_file_together(tmp_path: Path) -> None:
    conf = write(tmp_path / "vm.conf", "[config]\nsize = 12Q\nroottype = zfs\nfoo = 1\n")
    with pytest.raises(UsageError) as info:
        read_config(conf)
    assert info.value.problems == [f"--config: {conf} line 4: unknown key 'foo'"]
    conf = write(tmp_path / "vm.conf", "[config]\nsize = 12Q\nroottype = zfs\n")
    assert len(problems("--config", str(conf))) == 2


def test_secret_in_config_never_echoed(tmp_path: Path) -> None:
    conf = write(tmp_path / "vm.conf", f"[config]\nuser = {SECRET}\nroot-password = \n")
    s = settings_of("--config", str(conf))
    assert s.user == (SECRET,)  # refused later, by make_plan, without the value
    assert s.root_password == ""


# --- precedence ----------------------------------------------------------------


def test_command_line_wins(tmp_path: Path) -> None:
    conf = write(tmp_path / "vm.conf",
                 "[config]\nhostname = fromconf\nsudo = yes\npackage = a, b\nsize = 4G\n")
    s = settings_of("--config", str(conf), "--hostname", "fromcli", "--no-sudo",
                    "--package", "c")
    assert s.hostname == "fromcli"
    assert s.sudo is False
    assert s.package == ("c",)  # the command line replaces a config file's list
    assert s.size == 4 * 10**9  # not given on the command line: the config's


def test_later_config_wins(tmp_path: Path) -> None:
    a = write(tmp_path / "a.conf", "[config]\nhostname = a\nsudo = yes\n")
    b = write(tmp_path / "b.conf", "[config]\nhostname = b\n")
    s = settings_of("--config", str(a), "--config", str(b))
    assert s.hostname == "b" and s.sudo
    assert s.config_files == (str(a), str(b))


def test_default_config_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    conf = write(home / ".vmdebootstrap.conf", "[config]\nhostname = fromhome\n")
    monkeypatch.setenv("HOME", str(home))
    assert conf in default_config_files()
    monkeypatch.setattr(cli, "default_config_files", lambda: [conf])
    assert cli.parse([])[0].hostname == "fromhome"
    assert cli.parse(["--no-default-configs"])[0].hostname == "debian"
    assert cli.parse(["--no-default-configs"])[0].config_files == ()


def test_bad_default_config_is_skipped_with_no_default_configs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = write(tmp_path / "broken.conf", "not ini at all\n")
    monkeypatch.setattr(cli, "default_config_files", lambda: [conf])
    with pytest.raises(UsageError):
        cli.parse([])
    assert cli.parse(["--no-default-configs"])[0] == Settings()


# --- hooks beside config files -----------------------------------------------------


def test_customize_relative_to_the_config_file(host: Host, tmp_path: Path) -> None:
    confdir = tmp_path / "project"
    script = write(confdir / "hooks" / "x.sh", "#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    conf = write(confdir / "live.conf", "[config]\ntarball = root.tar\ncustomize = hooks/x.sh\n")
    assert not (host.cwd / "hooks").exists()
    plan = make_plan(settings_of("--config", str(conf)), host)
    assert plan.system.hook == script


def test_customize_in_cwd_wins_over_config_dir(host: Host, tmp_path: Path) -> None:
    confdir = tmp_path / "project"
    for base in (confdir, host.cwd):
        write(base / "hooks" / "x.sh", "#!/bin/sh\n").chmod(0o755)
    conf = write(confdir / "live.conf", "[config]\ntarball = root.tar\ncustomize = hooks/x.sh\n")
    assert make_plan(settings_of("--config", str(conf)), host).system.hook == \
        host.cwd / "hooks" / "x.sh"


# --- --dump-config round trip ---------------------------------------------------------

ROUND_TRIP_ARGV = (
    "--squash", "out/live", "--iso", "out/live.iso", "--mirror", MIRROR,
    "--apt-mirror", "http://image.example/debian", "--configure-apt",
    "--distribution", "bookworm", "--arch", "amd64",
    "--debootstrapopts", "variant=minbase components=main,contrib",
    "--bootstrap-tool", "debootstrap", "--package", "less", "--package", "vim",
    "--kernel-package", "linux-image-rt-amd64", "--no-acpid", "--hostname", "live",
    "--root-password", SECRET, "--user", f"alice/{SECRET}", "--sudo", "--enable-dhcp",
    "--no-systemd-networkd", "--serial-console", "--customize", "hooks/x.sh",
    "--hook-timeout", "600", "--size", "3G", "--bootsize", "256MiB", "--swap", "512M",
    "--roottype", "btrfs", "--boottype", "ext4", "--part-type", "gpt", "--grub",
    "--no-extlinux", "--use-uefi", "--esp-size", "200MiB", "--sparse",
    "--squash-compression", "zstd:19", "--pkglist", "--owner", "builder",
    "--iso-volume-id", "MY_LIVE", "--iso-menu-title", "My live, with a comma",
    "--kernel-append", "quiet splash", "--verbose", "--log", "x.log", "--log-level", "info",
    "--log-mode", "0640", "--no-update-initramfs",
)


def dump(*argv: str) -> str:
    settings, _ns = cli.parse([*argv, "--no-default-configs"])
    return dump_config(settings)


def test_dump_config_round_trip(tmp_path: Path) -> None:
    original = settings_of(*ROUND_TRIP_ARGV)
    conf = write(tmp_path / "dumped.conf", dump_config(original))
    again = settings_of("--config", str(conf))
    secrets: dict[str, object] = {"root_password": None, "user": (), "config_files": ()}
    assert again.with_values(**secrets) == original.with_values(**secrets)
    assert again.config_files == (str(conf),)


def test_dump_config_defaults_round_trip(tmp_path: Path) -> None:
    conf = write(tmp_path / "dumped.conf", dump_config(Settings()))
    assert settings_of("--config", str(conf)).with_values(config_files=()) == Settings()


def test_dump_config_masks_secrets() -> None:
    text = dump(*ROUND_TRIP_ARGV)
    assert SECRET not in text
    assert "# root-password is set (not shown)" in text
    assert "# user is set (not shown)" in text
    assert text.startswith("[config]\n")


def test_dump_config_format() -> None:
    text = dump("--package", "a", "--package", "b", "--sudo", "--debootstrapopts",
                "variant=minbase", "--debootstrapopts", "components=main,contrib")
    lines = text.splitlines()
    assert "package = a, b" in lines
    assert "sudo = yes" in lines
    assert "enable-dhcp = no" in lines
    assert "debootstrapopts = variant=minbase components=main,contrib" in lines
    assert "size = 1000000000" in lines
    assert not any(line.startswith(("grub", "image", "user")) for line in lines)


def test_dumped_config_plans_like_the_command_line(host: Host, tmp_path: Path) -> None:
    argv = ("--tarball", "root.tar.gz", "--sudo", "--package", "less",
            "--distribution", "testing", "--debootstrapopts", "variant=minbase")
    conf = write(tmp_path / "d.conf", dump(*argv))
    direct: Plan = make_plan(settings_of(*argv), host)
    via_file = make_plan(settings_of("--config", str(conf)), host)
    ignore: Callable[[Plan], Plan] = lambda p: dataclasses.replace(  # noqa: E731
        p, settings=p.settings.with_values(config_files=()))
    assert ignore(direct) == ignore(via_file)
