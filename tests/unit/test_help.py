"""vmdebootstrap --help: every option in its group, its default said once (in
Debian's words), the choices listed, and every name of a switch shown."""

from __future__ import annotations

import re

import pytest

from vmdebootstrap import cli
from vmdebootstrap.intent.options import GROUPS, OPTIONS, Kind, describe


@pytest.fixture
def help_text(monkeypatch: pytest.MonkeyPatch) -> str:
    # Wide enough that no help text wraps: one entry is one or two lines.
    monkeypatch.setenv("COLUMNS", "1000")
    return cli.make_parser().format_help()


def entries(text: str) -> dict[str, str]:
    """Each option's entry in the help, by its first name, on one line."""
    found: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"  (--[a-z0-9-]+)", line)
        if m:
            current = m.group(1)
            found[current] = line.strip()
        elif current and line.startswith("    "):
            found[current] += " " + line.strip()
        else:
            current = None
    return found


def test_every_option_has_its_described_help(help_text: str) -> None:
    found = entries(help_text)
    for opt in OPTIONS:
        assert f"--{opt.name}" in found, opt.name
        assert found[f"--{opt.name}"].endswith(describe(opt)), opt.name


def test_each_default_is_said_once(help_text: str) -> None:
    for name, entry in entries(help_text).items():
        assert entry.count("(default:") <= 1, entry
        assert "(default: True)" not in entry and "(default: False)" not in entry, name
    assert help_text.count("(default: mmdebstrap)") == 1


def test_switch_defaults_in_debian_words(help_text: str) -> None:
    found = entries(help_text)
    assert found["--secure-boot"].endswith("(default: yes)")
    assert found["--pkglist"].endswith("(default: no)")
    assert "(default:" not in found["--no-kernel"]  # "--no-kernel (default: no)" says nothing
    # grub is the bootloader unless extlinux is asked for: not "no" as its None would say
    assert found["--grub"].endswith("(default: yes, unless --extlinux)")
    assert found["--extlinux"].endswith("(default: no)")


@pytest.mark.parametrize("name", ["roottype", "boottype", "bootflag", "part-type",
                                  "log-level", "bootstrap-tool"])
def test_choices_are_listed(help_text: str, name: str) -> None:
    opt = next(o for o in OPTIONS if o.name == name)
    assert opt.choices
    assert f"(one of: {', '.join(opt.choices)})" in entries(help_text)[f"--{name}"]


def test_negatable_switches_show_both_names(help_text: str) -> None:
    found = entries(help_text)
    assert found["--pkglist"].startswith("--pkglist, --no-pkglist ")
    assert found["--secure-boot"].startswith("--secure-boot, --no-secure-boot ")
    # 1.x's other name for the opposite value
    assert found["--no-update-initramfs"].startswith(
        "--no-update-initramfs, --update-initramfs ")
    # --no-kernel has no --no-no-kernel
    assert "--no-no-kernel" not in help_text
    for opt in OPTIONS:
        if opt.kind is Kind.BOOL and opt.negatable and not opt.name.startswith("no-"):
            assert f"--{opt.name}, --no-{opt.name}" in help_text, opt.name


def test_options_are_in_their_groups(help_text: str) -> None:
    starts = {key: help_text.index(f"\n{title}:\n") for key, title in GROUPS.items()}
    ends = sorted([*starts.values(), len(help_text)])
    for opt in OPTIONS:
        start = starts[opt.group]
        end = next(e for e in ends if e > start)
        assert re.search(rf"\n  --{opt.name}[ ,\n]", help_text[start:end]), opt.name


@pytest.mark.parametrize(("argv", "dest", "value"), [
    (["--pkglist"], "pkglist", True),
    (["--pkglist", "--no-pkglist"], "pkglist", False),
    (["--no-secure-boot"], "secure_boot", False),
    (["--no-secure-boot", "--secure-boot"], "secure_boot", True),
    (["--update-initramfs"], "no_update_initramfs", False),
    (["--update-initramfs", "--no-update-initramfs"], "no_update_initramfs", True),
    (["--no-kernel"], "no_kernel", True),
])
def test_switch_names_set_the_value(argv: list[str], dest: str, value: bool) -> None:
    ns = cli.make_parser().parse_args(argv)
    assert getattr(ns, dest) is value


def test_a_switch_given_a_value_is_refused_by_name() -> None:
    from vmdebootstrap.errors import UsageError

    with pytest.raises(UsageError) as info:
        cli.make_parser().parse_args(["--pkglist=yes"])
    assert info.value.problems == [
        "--pkglist is a switch and takes no value ('yes' given): use --pkglist or --no-pkglist"]
