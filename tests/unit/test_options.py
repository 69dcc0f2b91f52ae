"""The option table, value conversion and Settings: one table, no disagreements."""

from __future__ import annotations

import dataclasses

import pytest

from vmdebootstrap import cli
from vmdebootstrap.errors import UsageError
from vmdebootstrap.intent.options import (
    BY_NAME,
    META_OPTIONS,
    OPTIONS,
    Kind,
    parse_bool,
    parse_size,
)
from vmdebootstrap.intent.settings import SECRET_OPTIONS, Settings, build_settings, convert

# --- the table ---------------------------------------------------------------


def test_names_unique_and_dests_match_settings() -> None:
    names = [o.name for o in OPTIONS]
    assert len(names) == len(set(names))
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert {o.dest for o in OPTIONS} == fields - {"config_files", "given"}
    assert not set(META_OPTIONS) & set(BY_NAME)


@pytest.mark.parametrize("opt", OPTIONS, ids=lambda o: o.name)
def test_settings_default_is_the_table_default(opt: object) -> None:
    assert isinstance(opt, type(OPTIONS[0]))
    field_default = getattr(Settings(), opt.dest)
    if opt.default is None:
        assert field_default in (None, ())
    else:
        value, problem = convert(opt.name, opt.default, "defaults")
        assert problem is None
        assert field_default == value


def test_build_settings_without_layers_is_default() -> None:
    assert build_settings([]) == Settings()


def test_choices_only_on_strings_and_defaults_among_them() -> None:
    for opt in OPTIONS:
        if opt.choices:
            assert opt.kind is Kind.STR
            assert opt.default is None or opt.default in opt.choices


def test_every_option_is_on_the_command_line() -> None:
    help_text = cli.make_parser().format_help()
    for opt in OPTIONS:
        assert f"--{opt.name}" in help_text


def test_secrets_are_not_in_the_settings_repr() -> None:
    s = Settings(root_password="Sekr1t-pa55word", user=("alice/Sekr1t-pa55word",))
    assert "Sekr1t" not in repr(s)
    assert set(SECRET_OPTIONS) <= set(BY_NAME)


# --- sizes and booleans ------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("0", 0),
    ("512", 512),
    ("4G", 4 * 10**9),
    ("4g", 4 * 10**9),
    ("512M", 512 * 10**6),
    ("100MiB", 100 * 1024**2),
    ("1.5GiB", 3 * 1024**3 // 2),
    ("2TB", 2 * 10**12),
    (" 3k ", 3000),
    ("1KiB", 1024),
])
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", " ", "12Q", "-1", "G", "1e9", "1.2.3G", "4 G B",
                                  "9" * 400, "10000000T"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("yes", True), ("Yes", True), ("true", True), ("on", True), ("1", True),
    ("no", False), ("NO", False), ("false", False), ("off", False), ("0", False), ("", False),
])
def test_parse_bool(text: str, expected: bool) -> None:
    assert parse_bool(text) is expected


def test_parse_bool_rejects() -> None:
    with pytest.raises(ValueError, match="'maybe' is not a boolean"):
        parse_bool("maybe")


# --- convert -----------------------------------------------------------------


def test_convert_names_the_option_on_the_command_line() -> None:
    value, problem = convert("size", "12Q", "command line")
    assert value is None
    assert problem is not None and problem.startswith("--size: '12Q' is not a size")


def test_convert_names_key_and_file_for_configs() -> None:
    _, problem = convert("size", "12Q", "/x/vm.conf")
    assert problem is not None and problem.startswith("'size' in /x/vm.conf:")


@pytest.mark.parametrize(("name", "raw", "expected"), [
    ("package", "sudo, less", ("sudo", "less")),
    ("package", "sudo,,less,", ("sudo", "less")),
    ("package", ("a", "b"), ("a", "b")),
    ("debootstrapopts", "variant=minbase components=main,contrib",
     ("variant=minbase", "components=main,contrib")),
    ("sudo", "yes", True),
    ("sudo", False, False),
    ("hook-timeout", " 60 ", 60),
    ("size", "2G", 2 * 10**9),
    ("roottype", "btrfs", "btrfs"),
    ("log-mode", "0644", 0o644),
    ("log-mode", " 600 ", 0o600),
])
def test_convert_values(name: str, raw: object, expected: object) -> None:
    assert convert(name, raw, "command line") == (expected, None)


@pytest.mark.parametrize(("name", "raw", "fragment"), [
    ("hook-timeout", "0", "--hook-timeout: '0' must be a positive number"),
    ("hook-timeout", "-5", "--hook-timeout:"),
    ("hook-timeout", "soon", "--hook-timeout:"),
    ("roottype", "zfs", "--roottype: 'zfs' is not one of: ext2, ext3, ext4, btrfs, xfs"),
    ("boottype", "ntfs", "--boottype: 'ntfs' is not one of"),
    ("log-level", "loud", "--log-level: 'loud' is not one of"),
    ("bootstrap-tool", "cdebootstrap", "--bootstrap-tool: 'cdebootstrap' is not one of"),
    ("hostname", "a\nb", "--hostname: the value contains a newline"),
    ("sudo", "perhaps", "--sudo: 'perhaps' is not a boolean"),
    ("package", "a\nb", "--package:"),
    ("custom-package", "x\0.deb", "--custom-package:"),
    ("log-mode", "0800", "--log-mode: '0800' is not an octal file mode"),
    ("log-mode", "4755", "--log-mode: '4755' is more than 0777"),
])
def test_convert_problems(name: str, raw: object, fragment: str) -> None:
    value, problem = convert(name, raw, "command line")
    assert value is None
    assert problem is not None and fragment in problem


@pytest.mark.parametrize("name", SECRET_OPTIONS)
def test_convert_never_echoes_secrets(name: str) -> None:
    raw = "Sekr1t\n" if name == "root-password" else ("alice/Sekr1t\n",)
    _, problem = convert(name, raw, "command line")
    assert problem == f"--{name}: invalid value"


def test_build_settings_later_layers_win_and_reports_all_problems() -> None:
    s = build_settings([("a.conf", {"hostname": "one", "package": "x"}),
                        ("command line", {"hostname": "two"})])
    assert s.hostname == "two" and s.package == ("x",)
    with pytest.raises(UsageError) as info:
        build_settings([("command line", {"size": "Q", "swap": "Z"})])
    assert len(info.value.problems) == 2


def test_bootloader() -> None:
    assert Settings().bootloader == "grub"
    assert Settings(extlinux=True).bootloader == "extlinux"
    assert Settings(grub=True, extlinux=False).bootloader == "grub"
    assert Settings(grub=False).bootloader == "none"
    assert Settings(extlinux=False).bootloader == "none"  # 1.x --no-extlinux: none


def test_outputs_lists_option_names() -> None:
    assert Settings(image="x.img", iso="y.iso").outputs == ["--image", "--iso"]
