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
    close_match,
    format_mode,
    parse_bool,
)
from vmdebootstrap.intent.settings import SECRET_OPTIONS, Settings

SECTION = "config"


def default_config_files() -> list[Path]:
    home = Path(os.environ.get("HOME", "/root"))
    return [p for p in (Path("/etc/vmdebootstrap.conf"), home / ".vmdebootstrap.conf")
            if p.exists()]


def read_config(path: Path, *, default: bool = False) -> dict[str, object]:
    """Raw values from one file; keys normalised to option names."""
    values, problems = read_config_collecting(path, default=default)
    if problems:
        raise UsageError(problems)
    return values


def read_config_collecting(path: Path, *, default: bool = False
                           ) -> tuple[dict[str, object], list[str]]:
    """The values of the keys that are right, and the problems of the rest
    (all of them, for one report).  A default config file (one the user
    did not name) says so in its problems."""
    try:
        values, problems = _read_config(path)
    except UsageError as exc:
        values, problems = {}, exc.problems
    if problems and default:
        problems = [f"{p} (a default config file: --no-default-configs skips it)"
                    for p in problems]
    return values, problems


def _parsed(path: Path) -> tuple[configparser.ConfigParser, list[str]]:
    """The file parsed, and its lines (for the line a key is on)."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--config: {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config: {path}: cannot read it: {exc}") from None
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise UsageError(_syntax_problems(path, exc, text.splitlines())) from None
    return parser, text.splitlines()


def _syntax_problems(path: Path, exc: configparser.Error, lines: list[str]) -> list[str]:
    """A syntax error as the file and line it is on, and how to write it."""
    def line(number: int) -> str:
        return repr(lines[number - 1].strip()) if 0 < number <= len(lines) else "''"

    where = f"--config: {path} line"
    if isinstance(exc, configparser.MissingSectionHeaderError):
        if lines[exc.lineno - 1].lstrip().startswith("["):
            return [f"{where} {exc.lineno}: {line(exc.lineno)} is not a section header: "
                    f"write [{SECTION}]"]
        return [f"{where} {exc.lineno}: {line(exc.lineno)} comes before any section: start "
                f"the file with a [{SECTION}] line"]
    if isinstance(exc, configparser.DuplicateOptionError):
        return [f"{where} {exc.lineno}: '{exc.option}' is set a second time in "
                f"[{exc.section}]: set it once"]
    if isinstance(exc, configparser.DuplicateSectionError):
        return [f"{where} {exc.lineno}: a second [{exc.section}] section: put its keys in "
                "the first one"]
    if isinstance(exc, configparser.ParsingError):
        return [f"{where} {number}: {line(number)} is not a KEY = VALUE line"
                for number, _text in exc.errors]
    first = str(exc).splitlines()[0]
    return [f"--config: {path}: not a valid config file: {first}"]


def _key_line(lines: list[str], key: str) -> str:
    """' line N' of the first line setting ``key`` (for the messages)."""
    for number, text in enumerate(lines, 1):
        if not text[:1].isspace() and text.partition("=")[0].partition(":")[0].strip() == key:
            return f" line {number}"
    return ""


def _read_config(path: Path) -> tuple[dict[str, object], list[str]]:
    parser, lines = _parsed(path)
    if not parser.has_section(SECTION):
        raise UsageError(f"--config: {path}: no [{SECTION}] section")
    problems = [f"--config: {path}: unknown section [{s}] (only [{SECTION}] is read)"
                for s in parser.sections() if s != SECTION]
    values: dict[str, object] = {}
    set_by: dict[str, str] = {}  # option name -> the key that set it
    for key, value in parser.items(SECTION):
        name = key.strip().replace("_", "-")
        where = f"--config: {path}{_key_line(lines, key)}"
        negate = name in OPPOSITES  # update-initramfs = yes: no-update-initramfs = no
        if negate:
            name = OPPOSITES[name].name
        elif name not in BY_NAME:
            close = close_match(name, [*BY_NAME, *OPPOSITES])
            problems.append(f"{where}: unknown key '{key}'"
                            + (f"; did you mean {close}?" if close else ""))
            continue
        if BY_NAME[name].opposite and name in set_by:
            problems.append(f"{where}: '{set_by[name]}' and '{key}' both set {name}: give one")
            continue
        set_by[name] = key
        if name in SECRET_OPTIONS and _reads_stdin(name, value):
            problems.append(f"{where}: '{key}': a password of '-' (read from standard input) "
                            "only works on the command line")
            continue
        if negate:
            try:
                values[name] = not parse_bool(value)
            except ValueError as exc:
                problems.append(f"'{key}' in {path}: {exc}")
            continue
        values[name] = value
    return values, problems


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
