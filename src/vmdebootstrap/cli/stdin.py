"""Passwords given as '-' (--user NAME/-, --root-password -) are read from
standard input, one line each, in command line order."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# A password of "-" is read from standard input (--user NAME/-, --root-password -).
STDIN = "-"
# Where the order of the password options on the command line is noted.
PASSWORD_ORDER = "password_order"


class NoteOrder(argparse.Action):
    """--user (appends) and --root-password (the last one wins), noting the
    order they came in, which is the order their '-' passwords are read."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[object] | None,
                 option_string: str | None = None) -> None:
        if self.dest == "user":
            setattr(namespace, self.dest, [*getattr(namespace, self.dest, []), values])
        else:
            setattr(namespace, self.dest, values)
        order = [*getattr(namespace, PASSWORD_ORDER, []), self.dest]
        setattr(namespace, PASSWORD_ORDER, order)


def _stdin_passwords_wanted(ns: argparse.Namespace) -> list[tuple[str, int]]:
    """The '-' passwords, in command line order, as (dest, index into
    ns.user); only the last --root-password counts (as for any option
    given twice)."""
    order: list[str] = getattr(ns, PASSWORD_ORDER, [])
    users: list[str] = getattr(ns, "user", [])
    wanted: list[tuple[str, int]] = []
    user_index = 0
    last_root = len(order) - 1 - order[::-1].index("root_password") \
        if "root_password" in order else -1
    for position, dest in enumerate(order):
        if dest == "user":
            if users[user_index].partition("/")[2] == STDIN:
                wanted.append((dest, user_index))
            user_index += 1
        elif position == last_root and getattr(ns, "root_password", None) == STDIN:
            wanted.append((dest, -1))
    return wanted


def read_stdin_passwords(ns: argparse.Namespace, problems: list[str]) -> list[str]:
    """Replace the '-' of --user NAME/- and --root-password - with lines of
    standard input: one line for each '-', in the order the options are on
    the command line.  Only the trailing newline is taken off a line; an
    empty line is an empty password (for --user, as NAME/ is) or a problem
    (for --root-password).  Standard input is only read when a '-' is
    given.  An option whose password is missing is left out, with a
    problem that names it.  Returns the passwords read."""
    wanted = _stdin_passwords_wanted(ns)
    if not wanted:
        return []
    users: list[str] = list(getattr(ns, "user", []))
    read: list[str] = []
    dropped: set[tuple[str, int]] = set()
    for count, (dest, index) in enumerate(wanted, 1):
        name = users[index].partition("/")[0] if dest == "user" else ""
        where = f"--user {name}/-" if dest == "user" else "--root-password -"
        line, problem = _read_line(where)
        if line is None:  # nothing more can be read: neither this password nor the rest
            if problem is None:
                problem = (f"{where}: standard input ended before this password (it is "
                           f"password {count} of {len(wanted)}: one line is read for each "
                           "'-', in command line order)")
            problems.append(problem)
            dropped.update(wanted[count - 1:])
            break
        if problem is None and not line and dest != "user":
            problem = f"{where}: the line read from standard input is empty: give a password"
        if problem is not None:
            problems.append(problem)
            dropped.add((dest, index))
            continue
        read.append(line)
        if dest == "user":
            users[index] = f"{name}/{line}"
        else:
            setattr(ns, dest, line)
    if ("root_password", -1) in dropped:
        delattr(ns, "root_password")
    if users:
        ns.user = [u for i, u in enumerate(users) if ("user", i) not in dropped]
    return read


def _read_line(where: str) -> tuple[str | None, str | None]:
    """A line of standard input without its newline (None at its end), and
    a problem with it.  A problem never shows the line: it is a password."""
    stdin = sys.stdin
    if stdin is None:
        return None, f"{where}: there is no standard input to read the password from"
    try:
        line = stdin.readline()
    except UnicodeDecodeError:
        return None, f"{where}: the password on standard input is not valid UTF-8 text"
    except (OSError, ValueError) as exc:
        return None, f"{where}: cannot read the password from standard input: {exc}"
    if not line:
        return None, None
    line = line.removesuffix("\n")
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8, as lone surrogates
        return line, f"{where}: the password on standard input is not valid UTF-8 text"
    return line, None
