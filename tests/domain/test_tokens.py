from __future__ import annotations

import pytest

from oore.domain.tokens import hash_token, looks_like_token, new_token, parse_bearer, same_hash


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
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", None),
        ("Bearer  abc", " abc"),
        ("Bearer ", None),
        (None, None),
        ("Basic abc", None),
    ],
)
def test_bearer_parsing_is_exact(header: str | None, token: str | None) -> None:
    assert parse_bearer(header) == token
