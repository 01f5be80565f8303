"""No token, secret or password ever reaches the daemon's output (its log and access log),
an error body or ``/metrics``: a real ``oored`` with the access log on goes through a whole
run (bootstrap token, owner sign-in, an API token, a runner registered and claiming with a
real ``oore runner``, a secret variable a build prints, stream and download tokens, a
notification channel's secret, URL token and SMTP password, and wrong credentials of every
kind), and every value is then looked for as sent, URL-encoded and base64-encoded."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

from oore.domain.tokens import new_token
from tests.e2e.conftest import DaemonFactory
from tests.e2e.test_runner_agent import Api, committed_repo, runners

__all__ = ["runners"]

VARIABLE_SECRET = "deploy-key-0f6b2c9e-secret"
CHANNEL_SECRET = "channel-signing-secret-9a81"
URL_TOKEN = "hooktoken-5d0c77e1"
SMTP_PASSWORD = "smtp-password-3e2f"
PIPELINE = """version: 1
platforms: [android]
commands:
  build:
    - 'echo "the key is $DEPLOY_KEY"'
    - "mkdir -p dist && echo artifact > dist/app.txt"
artifacts:
  patterns:
    - "dist/*.txt"
"""


def encodings(secret: str) -> set[str]:
    return {
        secret,
        quote(secret, safe=""),
        base64.b64encode(secret.encode()).decode().rstrip("="),
        base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="),
    }


def mint_bootstrap_token(data_dir: Path) -> str:
    minted = subprocess.run(
        [sys.executable, "-m", "oore.cli", "--data-dir", str(data_dir), "setup", "bootstrap-token"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return minted.stdout.strip()


def test_no_secret_reaches_the_logs_errors_or_metrics(
    make_daemon: DaemonFactory,
    runners: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    repo = committed_repo(tmp_path / "repo", {".oore.yaml": PIPELINE})
    daemon = make_daemon()
    daemon.env = {**daemon.env, "OORED_ACCESS_LOG": "1"}
    daemon.start()
    secrets = [VARIABLE_SECRET, CHANNEL_SECRET, URL_TOKEN, SMTP_PASSWORD]
    refusals: list[str] = []  # every error body the daemon sent

    def seen(reply: httpx.Response) -> httpx.Response:
        if reply.status_code >= 400:
            refusals.append(reply.text)
        return reply

    with daemon.client() as client, httpx.Client(timeout=10.0) as plain:
        bootstrap = mint_bootstrap_token(daemon.data_dir)
        wrong = new_token()
        secrets += [bootstrap, wrong]
        assert (
            seen(client.post("/v1/setup/bootstrap-token/verify", json={"token": wrong})).status_code
            == 401
        )
        verified = seen(client.post("/v1/setup/bootstrap-token/verify", json={"token": bootstrap}))
        assert verified.status_code == 200, verified.text
        secrets.append(verified.json()["session_token"])

        api = Api.local_owner(client)
        secrets.append(api.token)
        created = api.call("POST", "/v1/api-tokens", {"name": "ci", "role": "admin"})
        secrets.append(created["token"])
        by_token = Api(client, created["token"])
        project = by_token.project("app", repo)
        pipeline = by_token.pipeline(project["id"], name="ci")
        api.call(
            "POST",
            f"/v1/projects/{project['id']}/variables",
            {"name": "DEPLOY_KEY", "value": VARIABLE_SECRET, "secret": True},
            expect=201,
        )
        api.call(
            "POST",
            "/v1/settings/notification-channels",
            {
                "name": "hook",
                "kind": "webhook",
                "events": ["build_failed"],
                "url": f"http://127.0.0.1:9/hooks?token={URL_TOKEN}",
                "secret": CHANNEL_SECRET,
            },
            expect=201,
        )
        api.call(
            "POST",
            "/v1/settings/notification-channels",
            {
                "name": "mail",
                "kind": "email",
                "events": ["build_failed"],
                "email": {
                    "smtp_host": "127.0.0.1",
                    "smtp_port": 9,
                    "smtp_security": "none",
                    "from_address": "ci@example.com",
                    "to_addresses": ["dev@example.com"],
                    "username": "ci",
                    "password": SMTP_PASSWORD,
                },
            },
            expect=201,
        )
        registered = api.call("POST", "/v1/runners/register", {"name": "by-hand"})
        secrets.append(registered["token"])
        beat = client.post(
            f"/v1/runners/{registered['runner']['id']}/heartbeat",
            json={"status": "online"},
            headers={"Authorization": f"Bearer {registered['token']}"},
        )
        assert beat.status_code == 204, beat.text
        runners(daemon.url, api.token, "e2e", "any")  # it registers itself with the session
        build = api.trigger(project["id"], pipeline["id"])
        done = api.finished(build["id"])
        texts = [line["content"] for line in api.logs(build["id"])]
        assert done["build"]["status"] == "succeeded", (done, texts)
        assert "the key is ********" in texts

        minted = api.call("POST", f"/v1/builds/{build['id']}/stream-token")
        secrets.append(minted["token"])
        stream = f"/v1/builds/{build['id']}/logs/stream?token={minted['token']}"
        assert "event: done" in plain.get(daemon.url + stream).text
        assert seen(plain.get(daemon.url + stream)).status_code == 401  # single use

        [artifact] = api.call("GET", f"/v1/builds/{build['id']}/artifacts")["artifacts"]
        link = api.call("POST", f"/v1/artifacts/{artifact['id']}/download-link")
        secrets.append(urlsplit(link["download_url"]).path.rsplit("/", 1)[1])
        assert plain.get(link["download_url"]).content == b"artifact\n"
        scoped = api.call("POST", f"/v1/artifacts/{artifact['id']}/scoped-token", {})
        secrets.append(scoped["token"])
        redeemed = plain.get(daemon.url + f"/install/artifact/{scoped['token']}")
        assert redeemed.status_code == 307
        secrets.append(urlsplit(redeemed.headers["location"]).path.rsplit("/", 1)[1])

        # Wrong credentials of every kind, each in the place it is sent.
        guesses = [new_token() for _ in range(6)]
        secrets += guesses
        bearer = {"Authorization": f"Bearer {guesses[0]}"}
        for reply in (
            client.get("/v1/projects", headers=bearer),
            plain.get(
                daemon.url + "/v1/projects", headers={"Cookie": f"oore_session={guesses[1]}"}
            ),
            client.post(
                f"/v1/runners/{registered['runner']['id']}/heartbeat",
                json={"status": "online"},
                headers={"Authorization": f"Bearer {guesses[2]}"},
            ),
            plain.get(daemon.url + f"/v1/builds/{build['id']}/logs/stream?token={guesses[3]}"),
            plain.get(daemon.url + f"/v1/artifacts/download/{guesses[4]}"),
            plain.get(daemon.url + f"/install/artifact/{guesses[5]}?token={guesses[5]}"),
            client.post(
                "/v1/auth/trusted-proxy/login",
                headers={"X-Oore-Trusted-Proxy-Secret": guesses[0]},
            ),
        ):
            assert 400 <= seen(reply).status_code < 500, reply.text
        metrics = client.get("/metrics").text
    assert daemon.stop() == 0
    output = daemon.text()
    assert "http.request" in output  # the access log was on
    assert "/install/artifact/[redacted]" in output
    places = {
        "the daemon's output": output,
        "an error body": "\n".join(refusals),
        "/metrics": metrics,
    }
    for secret in secrets:
        for form in encodings(secret):
            for place, text in places.items():
                assert form not in text, f"a secret ({secret[:6]}…) is in {place}"
