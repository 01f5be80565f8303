"""External-access rules (contract §0.4, §7.3, §10.3)."""

from __future__ import annotations

import pytest

from oore.domain.network import (
    LOCAL_ORIGINS,
    WARPGATE_EMAIL_HEADER,
    TicketSource,
    TrustedProxySettings,
    UrlProblem,
    check_network_update,
    email_header,
    host_name,
    normalise_email,
    normalise_origin,
    normalise_origins,
    origin_allowed,
    parse_cidrs,
    parse_origin_list,
    peer_allowed,
    proxied_email,
    public_url_problem,
    rebinding_proof,
    run_preflight,
    served_names,
    warpgate_ticket,
    with_warpgate_ticket,
)
from oore.domain.setup import RemoteAuthMode
from oore.errors import ApiError


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("https://CI.Example.com/path?q=1", "https://ci.example.com"),
        ("https://ci.example.com:443", "https://ci.example.com"),
        ("http://ci.example.com:80/", "http://ci.example.com"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("  https://ci.example.com:8443  ", "https://ci.example.com:8443"),
        ("ftp://ci.example.com", None),
        ("https://user@ci.example.com", None),
        ("https://ci.example.com:99999", None),
        ("https://", None),
        ("ci.example.com", None),
        ("https://exa mple.com", None),
    ],
)
def test_normalise_origin(raw: str, origin: str | None) -> None:
    assert normalise_origin(raw) == origin


def test_origins_are_deduplicated_and_the_local_ones_appended() -> None:
    found = normalise_origins(["https://a.example", "https://A.example/x", LOCAL_ORIGINS[1]])
    assert found == ("https://a.example", LOCAL_ORIGINS[1], LOCAL_ORIGINS[0], *LOCAL_ORIGINS[2:])
    with pytest.raises(ApiError) as caught:
        normalise_origins(["https://ok.example", "nope"])
    assert caught.value.code == "invalid_input"


def test_environment_lists_skip_bad_entries() -> None:
    assert parse_origin_list("https://a.example,\nbad, https://b.example")[:2] == (
        "https://a.example",
        "https://b.example",
    )


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("https://ci.example.com", None),
        ("https://ci.example.com/sub/", None),
        ("http://ci.example.com", UrlProblem.NOT_HTTPS),
        ("https://localhost", UrlProblem.NOT_PUBLIC),
        ("https://app.localhost", UrlProblem.NOT_PUBLIC),
        ("https://127.0.0.1:8443", UrlProblem.NOT_PUBLIC),
        ("https://[::1]", UrlProblem.NOT_PUBLIC),
        ("https://0.0.0.0", UrlProblem.NOT_PUBLIC),
        ("https://u:p@ci.example.com", UrlProblem.INVALID),
        ("not a url", UrlProblem.INVALID),
        ("https://ci.example.com:x", UrlProblem.INVALID),
    ],
)
def test_public_url_problem(raw: str, problem: UrlProblem | None) -> None:
    assert public_url_problem(raw) is problem


def test_network_update_strips_slashes_and_treats_blank_as_unset() -> None:
    settings = check_network_update("https://ci.example.com/", " ", ["https://ci.example.com"])
    assert settings.public_url == "https://ci.example.com"
    assert settings.artifact_delivery_url is None
    assert settings.allowed_origins == ("https://ci.example.com", *LOCAL_ORIGINS)


def test_origins_are_checked_before_the_public_url() -> None:
    with pytest.raises(ApiError) as caught:
        check_network_update("http://ci.example.com", None, ["bad"])
    assert caught.value.code == "invalid_input"


def test_cidrs_need_a_prefix_and_come_out_canonical() -> None:
    assert parse_cidrs(["10.0.0.9/8", "10.0.0.0/8", "", "2001:db8::1/32"]) == (
        "10.0.0.0/8",
        "2001:db8::/32",
    )
    for bad in ("10.0.0.1", "10.0.0.0/40", "host/8"):
        with pytest.raises(ApiError):
            parse_cidrs([bad])


@pytest.mark.parametrize(
    ("peer", "ok"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.3.4.5", True),
        ("11.0.0.1", False),
        ("2001:db8::7", True),
        (None, False),
        ("garbage", False),
    ],
)
def test_peer_allowed(peer: str | None, ok: bool) -> None:
    assert peer_allowed(peer, ("10.0.0.0/8", "2001:db8::/32")) is ok


def test_header_and_email_normalisation() -> None:
    assert email_header(" X-Auth-Email ") == "x-auth-email"
    assert email_header("bad header") == "x-oore-user-email"
    assert email_header(None) == "x-oore-user-email"
    assert normalise_email("  Me@Example.COM ") == "me@example.com"
    assert normalise_email("no-at") is None
    assert normalise_email("a@" + "b" * 300) is None


SETTINGS = TrustedProxySettings(
    user_email_header="x-email", trusted_proxy_cidrs=("10.0.0.0/8",), shared_secret_enc="sealed"
)


def open_box(stored: str) -> str:
    assert stored == "sealed"
    return "s3cret"


@pytest.mark.parametrize(
    ("settings", "peer", "headers", "code"),
    [
        (SETTINGS, "192.0.2.1", {}, "trusted_proxy_peer_not_allowed"),
        (
            TrustedProxySettings(),
            "127.0.0.1",
            {"x-oore-trusted-proxy-secret": "s3cret"},
            "trusted_proxy_config_invalid",
        ),
        (SETTINGS, "10.0.0.1", {"x-email": "a@b.c"}, "trusted_proxy_shared_secret_missing"),
        (
            SETTINGS,
            "10.0.0.1",
            {"x-oore-trusted-proxy-secret": "s3cre"},
            "trusted_proxy_shared_secret_invalid",
        ),
        (
            SETTINGS,
            "10.0.0.1",
            {"x-oore-trusted-proxy-secret": "s3cret"},
            "trusted_proxy_identity_missing",
        ),
        (
            SETTINGS,
            "10.0.0.1",
            {"x-oore-trusted-proxy-secret": "s3cret", "x-email": "nobody"},
            "trusted_proxy_identity_invalid",
        ),
    ],
)
def test_proxied_email_checks_in_order(
    settings: TrustedProxySettings, peer: str, headers: dict[str, str], code: str
) -> None:
    with pytest.raises(ApiError) as caught:
        proxied_email(settings, peer, headers, open_box)
    assert caught.value.code == code


def test_proxied_email_is_lower_cased() -> None:
    headers = {"x-oore-trusted-proxy-secret": " s3cret ", "x-email": "A@Example.com"}
    assert proxied_email(SETTINGS, "10.1.1.1", headers, open_box) == "a@example.com"


def test_preflight_order_and_first_failure() -> None:
    preflight = run_preflight(
        setup_ready=False,
        auth_mode=RemoteAuthMode.TRUSTED_PROXY,
        auth_configured=False,
        public_url="http://ci.example.com",
        allowed_origins=LOCAL_ORIGINS,
    )
    assert [(c.id, c.failure_code) for c in preflight.checks] == [
        ("setup_ready", None),
        ("trusted_proxy_configured", "external_access_trusted_proxy_not_configured"),
        ("public_url_https", "external_access_https_required"),
        ("public_origin_allowed", None),
    ]
    failure = preflight.failure()
    assert failure is not None and failure.code == "external_access_preflight_failed"


def test_preflight_passes_with_everything_in_place() -> None:
    preflight = run_preflight(
        setup_ready=True,
        auth_mode=RemoteAuthMode.OIDC,
        auth_configured=True,
        public_url="https://ci.example.com/",
        allowed_origins=("https://ci.example.com",),
    )
    assert preflight.ready and preflight.failure() is None
    assert preflight.to_json()["checks"][-1]["id"] == "redirect_policy_consistent"
    not_listed = run_preflight(
        setup_ready=True,
        auth_mode=RemoteAuthMode.OIDC,
        auth_configured=True,
        public_url="https://ci.example.com",
        allowed_origins=LOCAL_ORIGINS,
    )
    failure = not_listed.failure()
    assert failure is not None and failure.code == "external_access_origin_not_allowed"


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("ci.example.com", "ci.example.com"),
        ("CI.Example.com.:8787", "ci.example.com"),
        ("127.0.0.1:8787", "127.0.0.1"),
        ("[::1]:8787", "::1"),
        ("[FD00::5]", "fd00::5"),
        ("localhost", "localhost"),
        ("", None),
        ("a b", None),
        ("host:port", None),
        ("host:99999999", None),
        ("host:\uff18\uff10", None),  # full-width digits
        ("user@host", None),
        ("[::1", None),
        ("[nope]:1", None),
        ("[::1]x", None),
        ("[127.0.0.1]", None),
        ("::1", None),
        ('"127.0.0.1"', None),
    ],
)
def test_host_name_reads_host_and_port(header: str, name: str | None) -> None:
    assert host_name(header) == name


@pytest.mark.parametrize(
    ("name", "proof"),
    [
        ("localhost", True),
        ("app.localhost", True),
        ("10.0.0.1", True),
        ("::1", True),
        ("localhost.evil.example", False),
        ("evil.example", False),
    ],
)
def test_only_ip_literals_and_loopback_names_are_rebinding_proof(name: str, proof: bool) -> None:
    assert rebinding_proof(name) is proof


def test_served_names_are_the_configured_ones_and_those_of_the_urls() -> None:
    names = served_names(
        (" Build-Box ", ""),
        "https://CI.example.com/ci",
        "https://dl.example.com",
        ("http://localhost:3000", "https://ui.example.com:8443"),
    )
    assert names == {"build-box", "ci.example.com", "dl.example.com", "localhost", "ui.example.com"}


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://ui.example.com", True),
        ("https://UI.example.com:443", True),
        ("https://ci.example.com", True),  # the public URL's
        ("http://127.0.0.1:8787", True),  # the request's own
        ("http://127.0.0.1:8788", False),
        ("https://127.0.0.1:8787", False),
        ("http://ui.example.com", False),
        ("null", False),
        ("", False),
    ],
)
def test_origin_allowed(origin: str, allowed: bool) -> None:
    verdict = origin_allowed(
        origin, ("https://ui.example.com",), "https://ci.example.com/ci", "http://127.0.0.1:8787"
    )
    assert verdict is allowed


# -- the Warpgate ticket ------------------------------------------------------------------

WARPGATE = TrustedProxySettings(user_email_header=WARPGATE_EMAIL_HEADER, configured_at=1)
OTHER_PROXY = TrustedProxySettings(user_email_header="x-email", configured_at=1)


def unseal(stored: str) -> str:
    assert stored == "sealed-ticket"
    return "saved ticket"


@pytest.mark.parametrize(
    ("settings", "environment", "source"),
    [
        (TrustedProxySettings(), None, None),
        (TrustedProxySettings(), "env", None),  # nothing saved: the proxy is not configured
        (WARPGATE, None, None),
        (WARPGATE, "env", TicketSource.ENVIRONMENT),
        (OTHER_PROXY, "env", None),  # the environment's ticket is for Warpgate only
        (
            TrustedProxySettings("x-email", warpgate_ticket_enc="x", configured_at=1),
            None,
            "database",
        ),
        (TrustedProxySettings(WARPGATE_EMAIL_HEADER, warpgate_ticket_enc="x"), "env", "database"),
    ],
)
def test_the_saved_ticket_wins_over_the_environment(
    settings: TrustedProxySettings, environment: str | None, source: str | None
) -> None:
    assert settings.ticket_source(environment) == source
    shown = settings.to_json(environment)
    assert shown["has_warpgate_ticket"] is (source is not None)
    assert shown.get("warpgate_ticket_source") == source
    assert "x" not in shown.values() and "env" not in shown.values()


def test_the_ticket_is_used_only_in_remote_trusted_proxy_mode() -> None:
    saved = TrustedProxySettings(user_email_header="x-email", warpgate_ticket_enc="sealed-ticket")
    proxy = RemoteAuthMode.TRUSTED_PROXY
    assert warpgate_ticket(proxy, saved, "env", unseal) == "saved ticket"
    assert warpgate_ticket(proxy, WARPGATE, "env", unseal) == "env"
    assert warpgate_ticket(proxy, WARPGATE, None, unseal) is None
    assert warpgate_ticket(proxy, OTHER_PROXY, "env", unseal) is None
    assert warpgate_ticket(proxy, None, "env", unseal) is None
    assert warpgate_ticket(RemoteAuthMode.OIDC, saved, "env", unseal) is None
    assert warpgate_ticket(None, saved, "env", unseal) is None  # local mode


def test_the_ticket_is_a_form_encoded_query_parameter() -> None:
    base = "https://dl.example.com/install/download/abc"
    assert with_warpgate_ticket(base, None) == base
    assert (
        with_warpgate_ticket(base, "ticket with /?") == f"{base}?warpgate-ticket=ticket+with+%2F%3F"
    )
    assert with_warpgate_ticket(f"{base}?a=1", "t&x") == f"{base}?a=1&warpgate-ticket=t%26x"
