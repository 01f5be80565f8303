from __future__ import annotations

import pytest

from oore.domain.tokens import (
    hash_token,
    looks_like_token,
    new_token,
    parse_bearer,
    presents_bearer,
    same_hash,
)


def test_tokens_are_64_lowercase_hex_and_unique() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(looks_like_token(t) for t in tokens)


def test_hash_is_sha256_hex_of_the_text() -> None:
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_same_hash_never_matches_none() -> None:
    assert same_hash("a", "a")
    assert not same_hash("a", "b")
    assert not same_hash(None, None)


@pytest.mark.parametrize(
    ("header", "token", "presented"),
    [
        ("Bearer abc", "abc", True),
        ("bearer abc", None, False),
        ("Bearer  abc", " abc", True),
        ("Bearer ", None, True),  # a Bearer credential, if an empty (invalid) one
        ("Bearerabc", None, False),
        (None, None, False),
        ("", None, False),
        ("Basic abc", None, False),
    ],
)
def test_bearer_parsing_is_exact(header: str | None, token: str | None, presented: bool) -> None:
    assert parse_bearer(header) == token
    assert presents_bearer(header) is presented
