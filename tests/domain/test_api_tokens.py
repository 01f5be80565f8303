from __future__ import annotations

import pytest

from oore.domain.api_tokens import ApiToken, check_request, mint, token_session
from oore.domain.tokens import looks_like_token
from oore.domain.users import Role, User, UserStatus, lower_role
from oore.errors import ApiError

NOW = 1_800_000_000


def user(role: Role) -> User:
    return User("u1", "a@example.com", None, role, UserStatus.ACTIVE, "s", None, NOW, NOW)


def token(role: Role, *, expires_at: int | None = None) -> ApiToken:
    return ApiToken("t1", "u1", "ci", "abcdef01", role, NOW, expires_at, None, None)


def code_of(creator: Role, **kw: object) -> tuple[int, str]:
    args: dict[str, object] = {"name": "ci", "role": "developer", "expires_at": None, **kw}
    with pytest.raises(ApiError) as caught:
        check_request(creator, now=NOW, **args)  # type: ignore[arg-type]
    return caught.value.status, caught.value.code


def test_name_is_trimmed_and_limited_to_256() -> None:
    made = check_request(Role.ADMIN, name="  ci  ", role="admin", expires_at=None, now=NOW)
    assert made.name == "ci"
    assert code_of(Role.ADMIN, name="   ") == (400, "invalid_name")
    assert code_of(Role.ADMIN, name="x" * 257) == (400, "invalid_name")
    assert check_request(Role.ADMIN, name="x" * 256, role="admin", expires_at=None, now=NOW)


def test_role_must_be_known_and_not_above_the_creator() -> None:
    assert code_of(Role.ADMIN, role="root") == (400, "invalid_role")
    assert code_of(Role.DEVELOPER, role="admin") == (403, "role_escalation")
    assert code_of(Role.ADMIN, role="owner") == (403, "role_escalation")
    assert code_of(Role.QA_VIEWER, role="developer") == (403, "role_escalation")
    made = check_request(Role.OWNER, name="n", role="owner", expires_at=None, now=NOW)
    assert made.role is Role.OWNER


def test_checks_come_in_the_contract_order() -> None:
    assert code_of(Role.DEVELOPER, name="", role="nope") == (400, "invalid_name")
    assert code_of(Role.DEVELOPER, role="nope", expires_at=NOW - 1) == (400, "invalid_role")
    assert code_of(Role.DEVELOPER, role="admin", expires_at=NOW - 1) == (403, "role_escalation")


def test_expiry_must_be_in_the_future() -> None:
    assert code_of(Role.ADMIN, expires_at=NOW) == (400, "invalid_input")
    made = check_request(Role.ADMIN, name="n", role="admin", expires_at=NOW + 1, now=NOW)
    assert made.expires_at == NOW + 1


def test_minted_tokens_are_64_hex_with_an_8_char_prefix() -> None:
    first, second = mint(), mint()
    assert looks_like_token(first.token) and first.prefix == first.token[:8]
    assert first.token != second.token


def test_effective_role_is_the_lower_of_token_and_creator() -> None:
    assert lower_role(Role.ADMIN, Role.DEVELOPER) is Role.DEVELOPER
    demoted = token_session("h", token(Role.ADMIN), user(Role.DEVELOPER))
    assert demoted.user.role is Role.DEVELOPER and demoted.via_api_token
    promoted = token_session("h", token(Role.DEVELOPER), user(Role.OWNER))
    assert promoted.user.role is Role.DEVELOPER
    assert promoted.expires_at is None and promoted.capped(NOW + 5) == NOW + 5
    timed = token_session("h", token(Role.QA_VIEWER, expires_at=NOW + 3), user(Role.ADMIN))
    assert timed.capped(NOW + 300) == NOW + 3
