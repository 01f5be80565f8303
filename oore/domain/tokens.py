"""Random credentials: 32 random bytes as 64 lowercase hex, kept only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from oore.errors import Unauthorized

TOKEN_BYTES = 32
_TOKEN_SHAPE = re.compile(r"^[0-9a-f]{64}$")


def new_token() -> str:
    """A fresh credential: 64 lowercase hex characters."""
    return secrets.token_hex(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The lowercase-hex SHA-256 of the token text; the only form the server stores."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same_hash(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two stored hashes; ``None`` never matches."""
    if a is None or b is None:
        return False
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))


def looks_like_token(text: str) -> bool:
    """True for text shaped like one of our tokens (cheap pre-check before a lookup)."""
    return bool(_TOKEN_SHAPE.match(text))


def missing_auth() -> Unauthorized:
    return Unauthorized("missing_auth", "Authorization: Bearer <token> header not provided")


def presents_bearer(header: str | None) -> bool:
    """Does an Authorization header present a Bearer credential at all? An absent header
    and one of another scheme (or spelling) present none: 401 ``missing_auth`` (§0.2),
    whereas a Bearer token that is wrong is refused as invalid."""
    return header is not None and header.startswith("Bearer ")


def parse_bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (exact prefix, one space)."""
    if header is None or not header.startswith("Bearer "):
        return None
    token = header[len("Bearer ") :]
    return token or None
