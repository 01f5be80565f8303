"""Request ids: on every answer, in every JSON error, on the 5xx line; the access log."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from quart_trio import QuartTrio

from oore.domain.tokens import new_token
from oore.eventlog import event_of
from oore.http.app import create_app
from oore.runtime import Runtime
from oore.store import Store
from tests.http.conftest import Api, Reply

GENERATED = re.compile(r"[0-9a-f]{16}")


class Lines:
    """The event records the app logged, as (event name, fields)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for record in self.caplog.records:
            logged = event_of(record)
            if logged is not None and logged[0] == name:
                found.append(dict(logged[1], level=record.levelname, exc_info=record.exc_info))
        return found


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Iterator[Lines]:
    caplog.set_level(logging.INFO)
    yield Lines(caplog)


def request_id(reply: Reply) -> str:
    value = reply.headers["X-Request-Id"]
    assert isinstance(value, str)
    return value


async def test_every_answer_has_an_id_and_a_well_formed_one_is_kept(api: Api) -> None:
    plain = await api.get("/healthz")
    assert plain.status == 200 and GENERATED.fullmatch(request_id(plain))
    assert request_id(await api.get("/healthz")) != request_id(plain)
    kept = await api.get("/healthz", headers={"X-Request-Id": "lb-7f3a.2:x_1-9"})
    assert request_id(kept) == "lb-7f3a.2:x_1-9"
    for unusable in ("two words", "a" * 129, 'quote"d', "tab\there", "ünï"):
        replaced = await api.get("/healthz", headers={"X-Request-Id": unusable})
        assert GENERATED.fullmatch(request_id(replaced)), unusable
    longest = await api.get("/healthz", headers={"X-Request-Id": "b" * 128})
    assert request_id(longest) == "b" * 128


async def test_every_json_error_carries_the_request_id(api: Api, owner_token: str) -> None:
    async def broken() -> str:
        raise RuntimeError("bug")

    api.app.add_url_rule("/v1/test-broken", "broken", broken)
    replies = [
        await api.get("/v1/nothing-here"),
        await api.call("DELETE", "/v1/public/setup-status"),
        await api.post(
            "/v1/setup/bootstrap-token/verify",
            data=b"{not json",
            headers={"Content-Type": "application/json"},
        ),
        await api.get("/v1/users/me"),
        await api.get("/v1/users/me", token=new_token()),
        await api.post("/v1/projects", json={"name": ""}, token=owner_token),
        await api.get("/v1/test-broken"),
        await api.get("/v1/nothing-here", headers={"X-Request-Id": "mine-1"}),
    ]
    for reply in replies:
        assert reply.status >= 400, reply
        # The envelope is unchanged; request_id is one more field, the header's value.
        assert {"error", "code"} <= set(reply.body) <= {"error", "code", "details", "request_id"}
        assert reply.body["request_id"] == request_id(reply), reply
    assert replies[-1].body["request_id"] == "mine-1"


async def test_a_5xx_answer_logs_one_line_with_its_request_id(api: Api, lines: Lines) -> None:
    async def broken() -> str:
        raise RuntimeError("bug in the handler")

    api.app.add_url_rule("/v1/test-broken", "broken", broken)
    reply = await api.get("/v1/test-broken?token=" + new_token())
    assert (reply.status, reply.code) == (500, "internal_error")
    (line,) = lines.events("http.error")
    assert line["request_id"] == reply.body["request_id"]
    assert (line["status"], line["code"], line["path"]) == (
        500,
        "internal_error",
        "/v1/test-broken",
    )
    assert line["level"] == "ERROR" and "bug in the handler" in str(line["exc_info"][1])
    errors = [r for r in lines.caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    # A 4xx is the client's business: no error line.
    await api.get("/v1/nothing-here")
    assert len(lines.events("http.error")) == 1


@pytest.fixture
def logged_api(store: Store, runtime: Runtime) -> Api:
    app: QuartTrio = create_app(runtime.app_services(store), access_log=True)
    return Api(app)


async def test_the_access_log_is_off_by_default(api: Api, lines: Lines) -> None:
    await api.get("/healthz")
    assert lines.events("http.request") == []


async def test_the_access_log_has_one_line_per_request_without_queries_or_tokens(
    logged_api: Api, lines: Lines
) -> None:
    secret = new_token()
    first = await logged_api.get(f"/v1/builds?limit=5&token={secret}")
    second = await logged_api.get(f"/v1/artifacts/download/{secret}")
    third = await logged_api.post("/v1/auth/local/login", json={})
    logged = lines.events("http.request")
    assert [(line["method"], line["path"], line["status"]) for line in logged] == [
        ("GET", "/v1/builds", first.status),
        ("GET", "/v1/artifacts/download/[redacted]", second.status),
        ("POST", "/v1/auth/local/login", 200),
    ]
    assert [line["request_id"] for line in logged] == [
        request_id(first),
        request_id(second),
        request_id(third),
    ]
    assert all(isinstance(line["duration_s"], float) for line in logged)
    assert secret not in lines.caplog.text
    assert third.body["session_token"] not in lines.caplog.text
