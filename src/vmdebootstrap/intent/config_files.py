"""vmdebootstrap 1.x style config files: INI, one [config] section whose
keys are the long option names, values as on the command line."""

from __future__ import annotations

import configparser
import os
from pathlib import Path

from vmdebootstrap.errors import UsageError
from vmdebootstrap.intent.options import (
    BY_NAME,
    OPPOSITES,
    OPTIONS,
    Kind,
    format_mode,
    parse_bool,
)
from vmdebootstrap.intent.settings import SECRET_OPTIONS, Settings

SECTION = "config"


def default_config_files() -> list[Path]:
    home = Path(os.environ.get("HOME", "/root"))
    return [p for p in (Path("/etc/vmdebootstrap.conf"), home / ".vmdebootstrap.conf")
            if p.exists()]


def read_config(path: Path) -> dict[str, object]:
    """Raw values from one file; keys normalised to option names."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_file(fh)
    except FileNotFoundError:
        raise UsageError(f"--config: {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config: {path}: cannot read it: {exc}") from None
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(f"--config: {path}: not a valid config file: {first}") from None
    if not parser.has_section(SECTION):
        raise UsageError(f"--config: {path}: no [{SECTION}] section")
    problems = [f"--config: {path}: unknown section [{s}] (only [{SECTION}] is read)"
                for s in parser.sections() if s != SECTION]
    values: dict[str, object] = {}
    set_by: dict[str, str] = {}  # option name -> the key that set it
    for key, value in parser.items(SECTION):
        name = key.strip().replace("_", "-")
        negate = name in OPPOSITES  # update-initramfs = yes: no-update-initramfs = no
        if negate:
            name = OPPOSITES[name].name
        elif name not in BY_NAME:
            problems.append(f"--config: {path}: unknown key '{key}'")
            continue
        if BY_NAME[name].opposite and name in set_by:
            problems.append(f"--config: {path}: '{set_by[name]}' and '{key}' both set "
                            f"{name}: give one")
            continue
        set_by[name] = key
        if name in SECRET_OPTIONS and _reads_stdin(name, value):
            problems.append(f"--config: {path}: '{key}': a password of '-' (read from "
                            "standard input) only works on the command line")
            continue
        if negate:
            try:
                values[name] = not parse_bool(value)
            except ValueError as exc:
                problems.append(f"'{key}' in {path}: {exc}")
            continue
        values[name] = value
    if problems:
        raise UsageError(problems)
    return values


def _reads_stdin(name: str, value: str) -> bool:
    """root-password = -, or a user NAME/- (read from standard input on the
    command line)."""
    if name == "root-password":
        return value.strip() == "-"
    return any(item.strip().partition("/")[2] == "-" for item in value.split(","))


def _format(kind: Kind, value: object) -> str:
    if kind is Kind.BOOL:
        return "yes" if value else "no"
    if kind is Kind.MODE:
        assert isinstance(value, int)
        return format_mode(value)
    if isinstance(value, tuple):
        return ", ".join(value)
    return str(value)


def dump_config(settings: Settings) -> str:
    """The effective settings in the config file format (secrets masked)."""
    lines = [f"[{SECTION}]"]
    for opt in OPTIONS:
        value = getattr(settings, opt.dest)
        if value is None or value == ():
            continue
        if opt.name in SECRET_OPTIONS:
            lines.append(f"# {opt.name} is set (not shown)")
            continue
        if opt.name == "debootstrapopts":
            lines.append(f"{opt.name} = {' '.join(value)}")
            continue
        lines.append(f"{opt.name} = {_format(opt.kind, value)}")
    return "\n".join(lines) + "\n"
