"""Password hashing through libxcrypt, and the --user NAME/PASSWORD option.

Python's crypt module is deprecated (and gone in 3.13), and running a tool
such as mkpasswd would put the password on a command line where any local
user can read it from /proc.  So the hashing happens in-process by calling
libxcrypt with ctypes.
"""

from __future__ import annotations

import ctypes
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from vmdebootstrap.errors import UsageError, VmdebootstrapError

LIBCRYPT_NAMES = ("libcrypt.so.1",)
METHODS = {"yescrypt": "$y$", "sha512crypt": "$6$"}
FALLBACK_METHOD = "sha512crypt"

# From <crypt.h>: sizeof(struct crypt_data) and CRYPT_GENSALT_OUTPUT_SIZE.
CRYPT_DATA_SIZE = 32768
GENSALT_OUTPUT_SIZE = 192

# Debian's useradd default NAME_REGEX; adduser is stricter, useradd is what runs.
USER_NAME_RE = re.compile(r"[a-z_][a-z0-9_-]*[$]?")
USER_NAME_MAX = 32


class PasswordError(VmdebootstrapError):
    """Hashing failed; the message never contains the password."""


class CryptBackend(Protocol):
    def gensalt(self, prefix: str, seed: bytes | None = None) -> str | None: ...

    def crypt(self, phrase: bytes, setting: str) -> str | None: ...


class LibXCrypt:
    """The two libxcrypt calls we need, with buffers we own and wipe."""

    def __init__(self, names: Sequence[str] = LIBCRYPT_NAMES) -> None:
        lib = None
        for name in names:
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if lib is None or not hasattr(lib, "crypt_rn") or not hasattr(lib, "crypt_gensalt_rn"):
            raise PasswordError(
                f"cannot hash passwords: libxcrypt ({', '.join(names)}) was not found; "
                "install the Debian package libcrypt1"
            )
        self._gensalt = lib.crypt_gensalt_rn
        self._gensalt.restype = ctypes.c_char_p
        self._gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p,
                                  ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self._crypt = lib.crypt_rn
        self._crypt.restype = ctypes.c_char_p
        self._crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p,
                                ctypes.c_int]

    def gensalt(self, prefix: str, seed: bytes | None = None) -> str | None:
        out = ctypes.create_string_buffer(GENSALT_OUTPUT_SIZE)
        # count 0 picks the method's default cost; a NULL rbytes makes
        # libxcrypt read its own randomness from the OS.  A seed is only
        # given for reproducible builds.
        result = self._gensalt(prefix.encode("ascii"), 0, seed, len(seed) if seed else 0,
                               out, GENSALT_OUTPUT_SIZE)
        return result.decode("ascii") if result else None

    def crypt(self, phrase: bytes, setting: str) -> str | None:
        if not setting.isascii():
            return None  # no crypt method uses non-ASCII settings
        data = ctypes.create_string_buffer(CRYPT_DATA_SIZE)
        try:
            result = self._crypt(phrase, setting.encode("ascii"), data, CRYPT_DATA_SIZE)
            return result.decode("ascii") if result else None
        finally:
            # struct crypt_data keeps a copy of the phrase; don't leave it in memory.
            ctypes.memset(data, 0, CRYPT_DATA_SIZE)


_backend: CryptBackend | None = None


def default_backend() -> CryptBackend:
    global _backend
    if _backend is None:
        _backend = LibXCrypt()
    return _backend


def _encode(password: str) -> bytes:
    phrase = password.encode("utf-8")
    if b"\0" in phrase:
        raise UsageError("a password must not contain a NUL character")
    return phrase


def _ok(hashed: str | None, prefix: str) -> bool:
    # crypt failure tokens ("*0", "*1") start with '*', never with a '$' prefix.
    return hashed is not None and hashed.startswith(prefix)


def hash_password(password: str, method: str = "yescrypt",
                  backend: CryptBackend | None = None, seed: bytes | None = None) -> str:
    """Hash for /etc/shadow; falls back to sha512crypt where yescrypt is missing.

    ``seed`` (reproducible builds only) replaces the random salt bytes, so
    the same inputs give the same hash."""
    if method not in METHODS:
        raise PasswordError(
            f"unknown password hashing method {method!r}; use one of {', '.join(METHODS)}")
    backend = backend or default_backend()
    phrase = _encode(password)
    tried: list[str] = []
    for name in dict.fromkeys((method, FALLBACK_METHOD)):
        prefix = METHODS[name]
        tried.append(name)
        setting = backend.gensalt(prefix, seed) if seed else backend.gensalt(prefix)
        if setting is None or not _ok(setting, prefix):
            continue
        hashed = backend.crypt(phrase, setting)
        if hashed is not None and _ok(hashed, setting):
            return hashed
    raise PasswordError(f"libxcrypt could not hash a password with {' or '.join(tried)}")


def verify_password(password: str, hashed: str, backend: CryptBackend | None = None) -> bool:
    backend = backend or default_backend()
    try:
        phrase = _encode(password)
    except UsageError:
        return False
    result = backend.crypt(phrase, hashed)
    if result is None or result.startswith("*"):
        return False
    return hmac.compare_digest(result.encode(), hashed.encode())


@dataclass(frozen=True)
class UserSpec:
    name: str
    # Not in the repr: a hash is still worth offline guessing if it leaks into a log.
    password_hash: str | None = field(repr=False)

    @property
    def empty_password(self) -> bool:
        """NAME/ form: no password, and it must be changed at first login."""
        return self.password_hash is None


USAGE = ("--user takes NAME/PASSWORD, or NAME/ for an empty password that must be "
         "changed at first login")


def check_user_name(name: str) -> None:
    if name == "root":
        raise UsageError(f"--user {name!r}: root is not set up with --user; "
                         "use --root-password")
    if len(name) > USER_NAME_MAX or not USER_NAME_RE.fullmatch(name):
        raise UsageError(
            f"--user {name!r}: not a valid user name: it must start with a lowercase "
            "letter or '_', then lowercase letters, digits, '_' or '-', optionally "
            f"ending in '$', at most {USER_NAME_MAX} characters")


def split_user(value: str) -> tuple[str, str]:
    """'NAME/PASSWORD' -> (NAME, PASSWORD), split at the first '/' (a password
    may contain '/').  Without a '/' the password is empty: a caller that must
    tell 'NAME' from 'NAME/' looks for the '/' itself."""
    name, _, password = value.partition("/")
    return name, password


def parse_user(value: str, hasher: Callable[[str], str] = hash_password) -> UserSpec:
    """Parse --user NAME/PASSWORD; errors name the option but never show the password."""
    name, password = split_user(value)
    if "/" not in value:
        # Not echoed: without a '/' we cannot tell a name from a mistyped password.
        raise UsageError(f"{USAGE}; the value given has no '/'")
    if not name:
        raise UsageError(f"{USAGE}; the name before '/' is empty")
    check_user_name(name)
    if not password:
        return UserSpec(name=name, password_hash=None)
    return UserSpec(name=name, password_hash=hasher(password))
