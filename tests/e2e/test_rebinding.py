"""The real ``oored`` against what a web page can make a browser send: a name re-pointed
at 127.0.0.1 (DNS rebinding), a cross-site Origin, and local login in a loop."""

from __future__ import annotations

import subprocess
from pathlib import Path

from oore.domain.users import LOCAL_LOGIN_PER_IP_LIMIT
from tests.e2e.conftest import DaemonFactory

LOGIN = "/v1/auth/local/login"


def test_a_page_on_another_name_or_origin_cannot_sign_in_or_change_anything(
    make_daemon: DaemonFactory, tmp_path: Path
) -> None:
    daemon = make_daemon()
    daemon.env["OORED_ALLOWED_HOSTS"] = "build-box.internal"
    daemon.start()
    port = daemon.url.rsplit(":", 1)[1]
    rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    with daemon.client() as client:
        refused = client.post(LOGIN, headers=rebound)
        assert (refused.status_code, refused.json()["code"]) == (400, "invalid_host")
        assert "session_token" not in refused.json()
        # Even without an Origin (a page's own requests after rebinding may carry none).
        bare = client.post(LOGIN, headers={"Host": f"evil.example:{port}"})
        assert (bare.status_code, bare.json()["code"]) == (400, "invalid_host")
        forged = client.post(LOGIN, headers={"Origin": "http://evil.example"})
        assert (forged.status_code, forged.json()["code"]) == (403, "origin_not_allowed")

        login = client.post(LOGIN, json={})
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['session_token']}"}
        subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
        project = {"name": "app", "local_repository_path": str(tmp_path / "repo")}
        for headers, status, code in (
            ({**auth, **rebound}, 400, "invalid_host"),
            ({**auth, "Origin": f"http://evil.example:{port}"}, 403, "origin_not_allowed"),
        ):
            reply = client.post("/v1/projects", json=project, headers=headers)
            assert (reply.status_code, reply.json()["code"]) == (status, code)
        assert client.get("/v1/projects", headers=auth).json()["projects"] == []

        # The names the daemon is reached by: loopback, IP literals, the ones it is given.
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"build-box.internal:{port}"):
            assert client.get("/v1/users/me", headers={**auth, "Host": host}).status_code == 200
        created = client.post(
            "/v1/projects", json=project, headers={**auth, "Origin": f"http://127.0.0.1:{port}"}
        )
        assert created.status_code == 201, created.text

        # Local login in a loop: a bounded number of sessions, then 429.
        answered = 1
        for _ in range(4 * LOCAL_LOGIN_PER_IP_LIMIT):
            reply = client.post(LOGIN, json={})
            if reply.status_code != 200:
                break
            answered += 1
        assert (reply.status_code, reply.json()["code"]) == (429, "local_login_rate_limited")
        assert answered <= LOCAL_LOGIN_PER_IP_LIMIT
    assert daemon.stop() == 0
