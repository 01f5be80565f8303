from __future__ import annotations

import pytest

from tests.conftest import PostgresForTests
from tests.http.conftest import Api

VERIFY = "/v1/setup/bootstrap-token/verify"


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"{not json", "application/json"),
        (b'{"token": 5}', "application/json"),
        (b'{"token": "x", "extra": 1}', "application/json"),
        (b"{}", "application/json"),
        (b"[]", "application/json"),
        (b'{"token": "x"}', "text/plain"),
        (b"\xff\xfe", "application/json"),
    ],
)
async def test_undecodable_bodies_are_400_invalid_request(
    api: Api, data: bytes, content_type: str
) -> None:
    reply = await api.post(VERIFY, data=data, headers={"Content-Type": content_type})
    assert (reply.status, reply.code) == (400, "invalid_request")
    assert reply.body["error"]


async def test_bodies_over_2_mib_are_413(api: Api) -> None:
    big = b'{"token": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    reply = await api.post(VERIFY, data=big, headers={"Content-Type": "application/json"})
    assert (reply.status, reply.code) == (413, "payload_too_large")


async def test_unknown_route_is_404_and_wrong_method_is_405(api: Api) -> None:
    missing = await api.get("/v1/nothing-here")
    assert (missing.status, missing.code) == (404, "not_found")
    wrong = await api.call("DELETE", "/v1/public/setup-status")
    assert (wrong.status, wrong.code) == (405, "method_not_allowed")
    assert "GET" in wrong.headers["Allow"]


async def test_a_vanished_database_is_a_clear_error_and_not_ready(
    api: Api, postgres: PostgresForTests, database_url: str
) -> None:
    from oore.store.admin import drop_database

    assert (await api.get("/readyz")).status == 200
    name = database_url.split("?")[0].rsplit("/", 1)[1]
    await drop_database(postgres.admin_url, name)
    # The drop cuts the pool's connections. A request that meets a cut one is answered
    # 503 store_unavailable and the daemon treats the database as down (its probes fail
    # from then on); one that opens a new connection first meets "no such database", a
    # failure of the store: 500 store_error. Which comes first is a race; either is a
    # clear JSON answer, and nothing else is.
    for _ in range(5):
        reply = await api.get("/v1/public/setup-status")
        assert (reply.status, reply.code) in {(500, "store_error"), (503, "store_unavailable")}
    ready = await api.get("/readyz")
    assert ready.status == 503
    assert ready.body == {"ok": False, "database": False, "migrations": False, "encryption": True}


async def test_an_unexpected_failure_is_a_json_500_not_a_traceback(api: Api) -> None:
    async def broken() -> str:
        raise RuntimeError("bug")

    api.app.add_url_rule("/v1/test-broken", "broken", broken)
    reply = await api.get("/v1/test-broken")
    assert (reply.status, reply.code) == (500, "internal_error")
    assert "bug" not in reply.body["error"]
