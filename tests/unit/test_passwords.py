from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmdebootstrap.errors import UsageError
from vmdebootstrap.host import passwords
from vmdebootstrap.host.passwords import (
    LibXCrypt,
    PasswordError,
    UserSpec,
    hash_password,
    parse_user,
    split_user,
    verify_password,
)

SECRET = "Tr0ub4dor&3-sekrit"


def fake_hash(password: str) -> str:
    return "$y$fake$hash"


# --- hashing through the real libxcrypt ------------------------------------

def test_hash_then_verify() -> None:
    hashed = hash_password(SECRET)
    assert hashed.startswith("$y$")
    assert verify_password(SECRET, hashed)
    assert not verify_password(SECRET + "x", hashed)
    assert SECRET not in hashed


def test_salts_differ() -> None:
    assert hash_password(SECRET) != hash_password(SECRET)


def test_sha512crypt_method() -> None:
    hashed = hash_password(SECRET, "sha512crypt")
    assert hashed.startswith("$6$")
    assert verify_password(SECRET, hashed)


def test_unicode_and_slash_passwords() -> None:
    for password in ("pässwörd/ü", "a/b/c", " "):
        assert verify_password(password, hash_password(password))


def test_unknown_method() -> None:
    with pytest.raises(PasswordError, match="'md5'"):
        hash_password(SECRET, "md5")


def test_nul_in_password_rejected_without_echo() -> None:
    with pytest.raises(UsageError) as info:
        hash_password("abc\0" + SECRET)
    assert SECRET not in str(info.value)
    assert not verify_password("abc\0def", hash_password("abc"))


@pytest.mark.parametrize("hashed", ["", "garbage", "*0", "$y$", "\u00e9t\u00e9"])
def test_verify_rejects_bad_hashes(hashed: str) -> None:
    assert not verify_password(SECRET, hashed)


def test_missing_libcrypt() -> None:
    with pytest.raises(PasswordError, match="libcrypt1"):
        LibXCrypt(("libdoes-not-exist.so.9",))


def test_library_without_crypt_functions() -> None:
    # libc loads fine but has no crypt_gensalt_rn: still a clear error.
    with pytest.raises(PasswordError, match="libxcrypt"):
        LibXCrypt(("libc.so.6",))


def test_default_backend_is_cached() -> None:
    assert passwords.default_backend() is passwords.default_backend()


# --- fallback and failure handling with a fake backend ----------------------

@dataclass
class FakeBackend:
    salts: dict[str, str | None]
    hashes: dict[str, str | None] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def gensalt(self, prefix: str) -> str | None:
        self.calls.append(prefix)
        return self.salts.get(prefix)

    def crypt(self, phrase: bytes, setting: str) -> str | None:
        return self.hashes.get(setting, setting + "HASH")


def test_falls_back_to_sha512crypt_without_yescrypt() -> None:
    backend = FakeBackend({"$y$": None, "$6$": "$6$salt"})
    assert hash_password(SECRET, backend=backend) == "$6$saltHASH"
    assert backend.calls == ["$y$", "$6$"]


def test_falls_back_when_yescrypt_hash_fails() -> None:
    backend = FakeBackend({"$y$": "$y$j9T$s", "$6$": "$6$salt"}, {"$y$j9T$s": "*0"})
    assert hash_password(SECRET, backend=backend) == "$6$saltHASH"


def test_gensalt_failure_token_is_not_used() -> None:
    backend = FakeBackend({"$y$": "*0", "$6$": "*1"})
    with pytest.raises(PasswordError, match="yescrypt or sha512crypt"):
        hash_password(SECRET, backend=backend)


def test_hash_with_wrong_prefix_is_rejected() -> None:
    backend = FakeBackend({"$6$": "$6$salt"}, {"$6$salt": "$1$oops"})
    with pytest.raises(PasswordError, match=r"with sha512crypt$"):
        hash_password(SECRET, "sha512crypt", backend=backend)


def test_crypt_returning_null() -> None:
    backend = FakeBackend({"$6$": "$6$salt"}, {"$6$salt": None})
    with pytest.raises(PasswordError):
        hash_password(SECRET, "sha512crypt", backend=backend)
    assert not verify_password(SECRET, "$6$salt", backend=backend)


# --- --user NAME/PASSWORD --------------------------------------------------

@pytest.mark.parametrize(("value", "split"), [
    ("alice/pw", ("alice", "pw")),
    ("bob/a/b//c", ("bob", "a/b//c")),
    ("carol/", ("carol", "")),
    ("dave", ("dave", "")),
    ("/pw", ("", "pw")),
    ("", ("", "")),
])
def test_split_user_splits_at_the_first_slash(value: str, split: tuple[str, str]) -> None:
    assert split_user(value) == split



def test_parse_user_hashes_password() -> None:
    spec = parse_user(f"alice/{SECRET}")
    assert spec.name == "alice"
    assert spec.password_hash is not None and verify_password(SECRET, spec.password_hash)
    assert not spec.empty_password


def test_parse_user_splits_at_first_slash() -> None:
    seen: list[str] = []

    def record(password: str) -> str:
        seen.append(password)
        return "$y$x"

    assert parse_user("bob/a/b//c", hasher=record).name == "bob"
    assert seen == ["a/b//c"]


def test_parse_user_empty_password_form() -> None:
    spec = parse_user("carol/")
    assert spec == UserSpec("carol", None)
    assert spec.empty_password


def test_repr_never_shows_password_or_hash() -> None:
    spec = parse_user(f"dave/{SECRET}")
    assert spec.password_hash is not None
    for text in (repr(spec), str(spec)):
        assert SECRET not in text
        assert spec.password_hash not in text
        assert "dave" in text


@pytest.mark.parametrize("name", [
    "_svc", "a", "user-1", "user_2", "machine$", "a" * 32,
])
def test_parse_user_valid_names(name: str) -> None:
    assert parse_user(f"{name}/pw", hasher=fake_hash).name == name


@pytest.mark.parametrize("name", [
    "Alice", "1abc", "-abc", "a b", "a.b", "ab$c", "a$$", "é", "a" * 33, "a:b",
])
def test_parse_user_invalid_names(name: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_user(f"{name}/{SECRET}", hasher=fake_hash)
    message = str(info.value)
    assert message.startswith("--user ")
    assert repr(name) in message
    assert SECRET not in message


def test_parse_user_root_rejected() -> None:
    with pytest.raises(UsageError, match=r"--user 'root'.*--root-password") as info:
        parse_user(f"root/{SECRET}", hasher=fake_hash)
    assert SECRET not in str(info.value)


def test_parse_user_missing_slash_does_not_echo_value() -> None:
    with pytest.raises(UsageError) as info:
        parse_user(SECRET, hasher=fake_hash)
    message = str(info.value)
    assert "--user" in message and "NAME/PASSWORD" in message
    assert SECRET not in message


def test_parse_user_empty_name() -> None:
    with pytest.raises(UsageError, match=r"--user.*NAME/PASSWORD.*empty") as info:
        parse_user(f"/{SECRET}", hasher=fake_hash)
    assert SECRET not in str(info.value)


def test_parse_user_hashes_for_real_by_default() -> None:
    spec = parse_user("erin/a/b")
    assert spec.password_hash is not None and verify_password("a/b", spec.password_hash)


@given(st.text())
def test_parse_user_arbitrary_text(value: str) -> None:
    try:
        spec = parse_user(value, hasher=fake_hash)
    except UsageError as err:
        assert str(err).startswith("--user")
    else:
        assert isinstance(spec, UserSpec)
        assert value.startswith(spec.name + "/")


MARK = "Zq9-SENTINEL-"


@given(st.text().filter(lambda s: MARK not in s), st.text())
def test_parse_user_error_never_contains_password(name: str, rest: str) -> None:
    password = MARK + rest
    try:
        parse_user(f"{name}/{password}", hasher=fake_hash)
    except UsageError as err:
        assert MARK not in str(err)
        assert password not in str(err)
