from __future__ import annotations

from pathlib import Path

from openapi_spec_validator import validate

from oore import __version__
from oore.http.app import create_app
from oore.runtime import open_runtime
from oore.services.artifact_storage import ArtifactsConfig
from oore.store import Store
from tests.http.conftest import Api, FakeClock


async def test_healthz(api: Api) -> None:
    reply = await api.get("/healthz")
    assert reply.status == 200
    assert reply.body["ok"] is True
    assert reply.body["version"] == reply.body["package_version"] == __version__
    assert reply.body["channel"] is None


async def test_readyz_when_database_schema_and_key_are_in_order(api: Api) -> None:
    reply = await api.get("/readyz")
    assert (reply.status, reply.body) == (
        200,
        {"ok": True, "database": True, "migrations": True, "encryption": True},
    )


async def test_readyz_is_503_without_an_encryption_key(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    """An app built without a key could not store a secret (a daemon always has one)."""
    keyless = ArtifactsConfig(data_dir=tmp_path / "data")
    async with open_runtime(store, clock, artifacts_config=keyless) as runtime:
        reply = await Api(create_app(runtime.app_services(store))).get("/readyz")
    assert (reply.status, reply.body) == (
        503,
        {"ok": False, "database": True, "migrations": True, "encryption": False},
    )


async def test_metrics_count_requests_by_route_template(api: Api, owner_token: str) -> None:
    await api.get("/v1/users/me", token=owner_token)
    await api.get("/v1/users/me")
    await api.get("/v1/does-not-exist")
    text = (await api.get("/metrics")).body
    assert 'http_requests_total{method="GET",path="/v1/users/me",status="200"} 1.0' in text
    assert 'http_requests_total{method="GET",path="/v1/users/me",status="401"} 1.0' in text
    assert 'path="__unmatched__",status="404"' in text
    assert "http_request_duration_seconds_bucket" in text
    assert 'oore_actor_mailbox_depth{actor="audit"}' in text
    assert 'oore_actor_restarts_total{actor="audit"}' in text


async def test_metrics_stay_bounded_whatever_methods_and_paths_are_sent(api: Api) -> None:
    async def send(batch: int) -> int:
        for i in range(20):
            await api.call(f"M{batch}X{i}", f"/v1/users/me?{i}")
            await api.call(f"M{batch}Y{i}", f"/nothing/{batch}/{i}")
            await api.call("GET", f"/nothing/{batch}/{i}")
        text: str = (await api.get("/metrics")).body
        return len(text.splitlines())

    await api.get("/metrics")  # its own series exist from now on
    first = await send(1)
    assert await send(2) == first
    text = (await api.get("/metrics")).body
    assert 'http_requests_total{method="OTHER",path="__unmatched__",status="405"} 40.0' in text
    assert 'http_requests_total{method="OTHER",path="__unmatched__",status="404"} 40.0' in text
    assert "M1X" not in text and "/nothing/" not in text


async def test_openapi_is_valid_and_lists_every_route(api: Api) -> None:
    reply = await api.get("/v1/openapi.json")
    assert reply.status == 200
    document = reply.body
    validate(document)
    documented = {
        (path, method.upper())
        for path, operations in document["paths"].items()
        for method in operations
    }
    served = set()
    for rule in api.app.url_map.iter_rules():
        if rule.websocket:
            continue  # OpenAPI cannot describe a WebSocket (the runner channel)
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in rule.methods or ():
            if method not in {"HEAD", "OPTIONS"} and rule.endpoint != "static":
                served.add((path, method))
    served.discard(("/v1/openapi.json", "GET"))
    assert served
    assert served <= documented, served - documented
