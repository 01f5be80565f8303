from __future__ import annotations

import pytest

from oore.domain.setup import (
    BootstrapAccepted,
    BootstrapRejected,
    Instance,
    Preferences,
    RemoteAuthMode,
    RuntimeMode,
    SetupState,
    chosen_preferences,
    decide_preferences,
    ensure_before_owner,
    erases_oidc,
    judge_bootstrap,
    owner_email,
    parse_ttl,
    require_remote,
    require_state,
    trusted_proxy_subject,
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
        ({"bootstrap_token_hash": None}, 0, 401, "no_bootstrap_token"),
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


def test_five_wrong_guesses_are_401_then_everything_is_429_even_the_right_token() -> None:
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
    locked = judge_bootstrap(instance(bootstrap_failed_attempts=attempts), hash_token(TOKEN), 10)
    assert isinstance(locked, BootstrapRejected)
    assert (locked.error.status, locked.error.code) == (429, "too_many_attempts")
    # Four wrong guesses still leave the right token its chance.
    assert isinstance(
        judge_bootstrap(instance(bootstrap_failed_attempts=4), hash_token(TOKEN), 10),
        BootstrapAccepted,
    )


@pytest.mark.parametrize(("text", "seconds"), [("15m", 900), ("1h", 3600), ("1s", 1), ("90", 90)])
def test_ttl_parsing(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["0s", "2h", "3601", "abc", "", "-5m"])
def test_ttl_out_of_range_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="TTL"):
        parse_ttl(text)


# -- setup steps and preferences ----------------------------------------------------------


def test_local_forces_oidc_and_remote_defaults_to_it() -> None:
    current = Preferences(direct_macos_runner_paused=True)
    local = chosen_preferences(RuntimeMode.LOCAL, RemoteAuthMode.TRUSTED_PROXY, current)
    assert local.remote_auth_mode is RemoteAuthMode.OIDC and local.direct_macos_runner_paused
    remote = chosen_preferences(RuntimeMode.REMOTE, None, current)
    assert remote.remote_with is RemoteAuthMode.OIDC
    proxy = chosen_preferences(RuntimeMode.REMOTE, RemoteAuthMode.TRUSTED_PROXY, current)
    assert proxy.remote_with is RemoteAuthMode.TRUSTED_PROXY


@pytest.mark.parametrize(
    ("state", "runtime", "auth", "erased"),
    [
        (SetupState.IDP_CONFIGURED, RuntimeMode.LOCAL, RemoteAuthMode.OIDC, True),
        (SetupState.IDP_CONFIGURED, RuntimeMode.REMOTE, RemoteAuthMode.TRUSTED_PROXY, True),
        (SetupState.IDP_CONFIGURED, RuntimeMode.REMOTE, RemoteAuthMode.OIDC, False),
        (SetupState.BOOTSTRAP_PENDING, RuntimeMode.LOCAL, RemoteAuthMode.OIDC, False),
    ],
)
def test_which_choices_erase_the_provider(
    state: SetupState, runtime: RuntimeMode, auth: RemoteAuthMode, erased: bool
) -> None:
    assert erases_oidc(state, Preferences(runtime, auth)) is erased


def test_only_the_owner_changes_the_sign_in_policy() -> None:
    current = Preferences(updated_at=5)
    kept = decide_preferences(
        current,
        runtime_mode=RuntimeMode.LOCAL,
        remote_auth_mode=None,
        direct_macos_runner_paused=True,
        is_owner=False,
    )
    assert not kept.auth_policy_changed and kept.new.direct_macos_runner_paused
    with pytest.raises(ApiError) as caught:
        decide_preferences(
            current,
            runtime_mode=None,
            remote_auth_mode=RemoteAuthMode.TRUSTED_PROXY,
            direct_macos_runner_paused=None,
            is_owner=False,
        )
    assert caught.value.code == "external_access_owner_required"
    remote = decide_preferences(
        current,
        runtime_mode=RuntimeMode.REMOTE,
        remote_auth_mode=None,
        direct_macos_runner_paused=None,
        is_owner=True,
    )
    assert remote.auth_policy_changed and remote.needs_preflight
    back = decide_preferences(
        Preferences(RuntimeMode.REMOTE),
        runtime_mode=RuntimeMode.LOCAL,
        remote_auth_mode=None,
        direct_macos_runner_paused=None,
        is_owner=True,
    )
    assert back.auth_policy_changed and not back.needs_preflight


def test_state_gates() -> None:
    ready = instance(state=SetupState.READY)
    owner = instance(state=SetupState.OWNER_CREATED)
    for gate, target, code in [
        (ensure_before_owner, ready, "already_configured"),
        (ensure_before_owner, owner, "invalid_state"),
    ]:
        with pytest.raises(ApiError) as caught:
            gate(target)
        assert caught.value.code == code
    with pytest.raises(ApiError) as caught:
        require_state(instance(), SetupState.OWNER_CREATED)
    assert caught.value.code == "invalid_state"
    with pytest.raises(ApiError) as caught:
        require_remote(Preferences(), RemoteAuthMode.OIDC)
    assert (caught.value.status, caught.value.code) == (403, "mode_restricted")


def test_owner_email_and_subjects() -> None:
    assert owner_email("  Me@Example.COM ") == "me@example.com"
    with pytest.raises(ApiError):
        owner_email("me")
    assert trusted_proxy_subject("me@example.com") == "trusted-proxy::me@example.com"
