from __future__ import annotations

import pytest

from oore.domain.setup import (
    BootstrapAccepted,
    BootstrapRejected,
    Instance,
    SetupState,
    judge_bootstrap,
    parse_ttl,
)
from oore.domain.tokens import hash_token, new_token
from oore.errors import ApiError

TOKEN = new_token()


def instance(**changes: object) -> Instance:
    base: dict[str, object] = {
        "instance_id": "i",
        "state": SetupState.BOOTSTRAP_PENDING,
        "bootstrap_token_hash": hash_token(TOKEN),
        "bootstrap_expires_at": 1000,
        "bootstrap_consumed_at": None,
        "bootstrap_failed_attempts": 0,
        "owner_email": None,
        "owner_subject": None,
    }
    base.update(changes)
    return Instance(**base)  # type: ignore[arg-type]


def test_right_token_in_time_is_accepted() -> None:
    assert isinstance(judge_bootstrap(instance(), hash_token(TOKEN), 999), BootstrapAccepted)


@pytest.mark.parametrize(
    ("changes", "now", "status", "code"),
    [
        ({"state": SetupState.READY}, 0, 409, "already_configured"),
        ({"bootstrap_token_hash": None}, 0, 500, "no_bootstrap_token"),
        ({"bootstrap_consumed_at": 5}, 0, 410, "token_consumed"),
        ({}, 1000, 410, "token_expired"),
    ],
)
def test_refusals_in_contract_order(
    changes: dict[str, object], now: int, status: int, code: str
) -> None:
    with pytest.raises(ApiError) as caught:
        judge_bootstrap(instance(**changes), hash_token(TOKEN), now)
    assert (caught.value.status, caught.value.code) == (status, code)


def test_five_wrong_guesses_are_401_then_429_but_the_right_token_still_works() -> None:
    attempts = 0
    codes = []
    for _ in range(7):
        verdict = judge_bootstrap(
            instance(bootstrap_failed_attempts=attempts), hash_token("wrong"), 10
        )
        assert isinstance(verdict, BootstrapRejected)
        attempts = verdict.failed_attempts
        codes.append((verdict.error.status, verdict.error.code))
    assert codes == [(401, "invalid_token")] * 5 + [(429, "too_many_attempts")] * 2
    locked = instance(bootstrap_failed_attempts=attempts)
    assert isinstance(judge_bootstrap(locked, hash_token(TOKEN), 10), BootstrapAccepted)


@pytest.mark.parametrize(("text", "seconds"), [("15m", 900), ("1h", 3600), ("1s", 1), ("90", 90)])
def test_ttl_parsing(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["0s", "2h", "3601", "abc", "", "-5m"])
def test_ttl_out_of_range_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="TTL"):
        parse_ttl(text)
