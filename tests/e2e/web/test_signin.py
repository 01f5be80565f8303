"""First-run setup for remote use and OIDC sign-in, in a real browser against the real
``oored`` and a real OpenID Provider on loopback.

The page walks the setup states with a bootstrap token minted on the server (remote mode,
the provider, the owner's own sign-in through the provider, finish), then the owner signs
in through the provider and out again. The provider signs in the account named by the
authorization request's ``login_hint``, which the test adds on the way, as a person
would pick their account.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Route, expect

from tests.e2e.conftest import DaemonFactory, free_port
from tests.e2e.web.conftest import WAIT_MS
from tests.oidc_kit import CLIENT_ID, CLIENT_SECRET, OidcProvider, start_provider, stop


def _mint_bootstrap_token(data_dir: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "oore.cli", "--data-dir", str(data_dir), "setup", "bootstrap-token"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def provider(port: int, tmp_path: Path) -> Iterator[OidcProvider]:
    started = start_provider(
        redirect_uris=(f"http://127.0.0.1:{port}/auth/callback",), log_dir=tmp_path
    )
    try:
        yield started
    finally:
        stop(started.proc)


def test_remote_setup_then_single_sign_on_in_the_browser(
    make_daemon: DaemonFactory, browser: Browser, provider: OidcProvider, port: int
) -> None:
    daemon = make_daemon().start("--listen", f"127.0.0.1:{port}")
    bootstrap = _mint_bootstrap_token(daemon.data_dir)
    context = browser.new_context(base_url=daemon.url)
    context.set_default_timeout(WAIT_MS)
    account = {"hint": "owner-sub"}

    def pick_account(route: Route) -> None:
        url = route.request.url
        if "/auth?" in url and "login_hint=" not in url:
            route.continue_(url=f"{url}&login_hint={account['hint']}")
        else:
            route.continue_()

    context.route(f"{provider.issuer}/**", pick_account)
    try:
        page = context.new_page()
        page.goto("/")
        expect(page.get_by_role("heading", name="Set up oore")).to_be_visible()
        page.get_by_role("button", name="set up this server for people on other machines").click()
        page.get_by_label("Bootstrap token").fill(bootstrap)
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("button", name="With an OIDC identity provider").click()
        page.get_by_label("Issuer URL").fill(provider.issuer)
        page.get_by_label("Client ID").fill(CLIENT_ID)
        page.get_by_label("Client secret (optional)").fill(CLIENT_SECRET)
        page.get_by_role("button", name="Save and continue").click()

        # The owner proves who they are through the provider; the page comes back to finish.
        page.get_by_role("button", name="Sign in as the owner").click()
        finish = page.get_by_role("button", name="Finish setup")
        expect(finish).to_be_visible()
        assert "code=" not in page.url  # the code never stays in the address bar
        finish.click()

        # Ready: people sign in through the provider.
        page.get_by_role("button", name="Sign in with single sign-on").click()
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        expect(page.get_by_text("owner@example.com")).to_be_visible()
        assert page.url == f"{daemon.url}/"
        cookies = context.cookies()
        session = [c for c in cookies if c["name"] == "oore_session"]
        assert session and session[0]["httpOnly"], cookies

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("button", name="Sign in with single sign-on")).to_be_visible()
        assert not [c for c in context.cookies() if c["name"] == "oore_session"]
    finally:
        context.close()
