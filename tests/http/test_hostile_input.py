"""Hostile input on every route: a clear 4xx JSON error, never a 500.

The routes come from the app's own URL map, so a new route is covered without editing
this file. Bodies are refused by the one JSON decoder before any route looks at them;
query strings by the shared query parsers; names by the domain's name rules.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from quart_trio import QuartTrio

from tests.http.builds_kit import Setup, make_setup, repo
from tests.http.conftest import Api, Reply

__all__ = ["repo"]

STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")

HOSTILE_BODIES = {
    "nested 100000 deep": b"[" * 100_000 + b"]" * 100_000,
    "nested 1000 deep": b'{"name":' * 1000 + b"1" + b"}" * 1000,
    "nested 65 deep in a field": b'{"name":' + b"[" * 65 + b"]" * 65 + b"}",
    "integer of 5000 digits": b'{"name": 1' + b"0" * 5000 + b"}",
    "integer over 64 bits": b'{"name": "x", "expires_at": 18446744073709551616}',
    "NaN": b'{"name": NaN}',
    "1e400": b'{"wait_seconds": 1e400}',
    "lone surrogate": b'{"name": "\\ud800", "token": "\\udc00"}',
}


def rules(app: QuartTrio, methods: tuple[str, ...]) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route, each placeholder filled with a fresh UUID."""
    found: list[tuple[str, str]] = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.websocket:
            continue
        path = re.sub(r"<[^>]*>", lambda _: str(uuid.uuid4()), rule.rule)
        found.extend((method, path) for method in sorted(rule.methods or ()) if method in methods)
    return found


def assert_refused(reply: Reply, where: str) -> None:
    """A 4xx; a JSON error carries a code (404/405 from routing may come without a body)."""
    assert 400 <= reply.status < 500, (where, reply.status, reply.body)
    if isinstance(reply.body, dict):
        assert reply.body.get("code"), (where, reply.body)


@pytest.mark.parametrize("kind", HOSTILE_BODIES)
async def test_every_route_refuses_a_hostile_json_body(
    app: QuartTrio, api: Api, owner_token: str, kind: str
) -> None:
    body = HOSTILE_BODIES[kind]
    for method, path in rules(app, STATE_CHANGING):
        # Logging out would end the session the second call presents.
        tokens = [None] if path == "/v1/auth/logout" else [None, owner_token]
        for token in tokens:
            reply = await api.call(
                method,
                path,
                data=body,
                token=token,
                headers={"Content-Type": "application/json"},
            )
            assert_refused(reply, f"{method} {path} token={token is not None}")


async def test_a_json_route_names_why_it_refused_the_body(api: Api, owner_token: str) -> None:
    deep = await api.call(
        "POST",
        "/v1/api-tokens",
        data=HOSTILE_BODIES["nested 100000 deep"],
        token=owner_token,
        headers={"Content-Type": "application/json"},
    )
    assert (deep.status, deep.code) == (400, "invalid_request")
    assert deep.body["details"] == "body is nested deeper than 64 levels"
    big = await api.call(
        "POST",
        "/v1/api-tokens",
        data=b'{"name": "t", "role": "qa_viewer", "expires_at": 1' + b"0" * 5000 + b"}",
        token=owner_token,
        headers={"Content-Type": "application/json"},
    )
    assert (big.status, big.code) == (400, "invalid_request")
    assert big.body["details"] == "body holds an integer out of the 64-bit range"


HOSTILE_QUERIES = {
    "NUL": "q=%00&search=a%00b&branch=%00&action=%00&status=%00",
    "control character": "q=a%07b&search=%1b",
    "offset over 64 bits": "offset=18446744073709551616",
    "offset of 5000 digits": "offset=" + "9" * 5000,
    "timestamps over 64 bits": "from_ts=18446744073709551616&to_ts=-18446744073709551616",
    "limit over 64 bits": "limit=99999999999999999999&after_sequence=99999999999999999999",
    "log positions over 64 bits": "before_sequence=99999999999999999999&tail=-99999999999999999999",
    "wait over 64 bits": "wait_seconds=99999999999999999999",
}


@pytest.fixture
async def setup(api: Api, owner_token: str, repo: Path) -> Setup:
    return await make_setup(api, owner_token, repo)


@pytest.mark.parametrize("kind", HOSTILE_QUERIES)
async def test_every_list_route_refuses_a_hostile_query(
    app: QuartTrio, api: Api, setup: Setup, kind: str
) -> None:
    query = HOSTILE_QUERIES[kind]
    for _, path in rules(app, ("GET",)):
        reply = await api.get(f"{path}?{query}", token=setup.token)
        assert reply.status < 500, (path, reply.status, reply.body)
    # The routes that read these parameters, on objects that exist.
    for path in (
        "/v1/builds",
        "/v1/users",
        "/v1/runners",
        "/v1/api-tokens",
        "/v1/projects",
        f"/v1/projects/{setup.project_id}/pipelines",
        "/v1/integrations",
        "/v1/integration-repositories",
        "/v1/audit-logs",
    ):
        reply = await api.get(f"{path}?{query}", token=setup.token)
        assert reply.status < 500, (path, reply.status, reply.body)


@pytest.mark.parametrize(
    "path",
    ["/v1/audit-logs", "/v1/builds", "/v1/projects", "/v1/users", "/v1/runners"],
)
async def test_an_offset_beyond_64_bits_is_invalid_request(
    api: Api, owner_token: str, path: str
) -> None:
    reply = await api.get(f"{path}?offset=9223372036854775808", token=owner_token)
    assert (reply.status, reply.code) == (400, "invalid_request")
    assert reply.body["details"] == "offset: out of the 64-bit range"


async def test_a_nul_in_a_search_is_invalid_request(api: Api, owner_token: str) -> None:
    for path in ("/v1/users?q=a%00", "/v1/builds?branch=%00", "/v1/audit-logs?action=%00"):
        reply = await api.get(path, token=owner_token)
        assert (reply.status, reply.code) == (400, "invalid_request"), path


HOSTILE_NAMES = {
    "100000 characters": "x" * 100_000,
    "NUL": "a\u0000b",
    "lone surrogate": "a\ud800b",
    "right-to-left override": "gpj.\u202eexe",
    "isolate": "a\u2066b",
    "bell": "a\u0007b",
    "line break": "a\nb",
}


async def _named(api: Api, setup: Setup, runner_id: str, name: str) -> dict[str, Reply]:
    """Every route that names something, given ``name``."""
    calls: dict[str, tuple[str, str, dict[str, Any]]] = {
        "project": ("POST", "/v1/projects", {"name": name, "local_repository_path": "/"}),
        "project rename": ("PATCH", f"/v1/projects/{setup.project_id}", {"name": name}),
        "project description": (
            "PATCH",
            f"/v1/projects/{setup.project_id}",
            {"description": name.replace("\n", "\x00")},
        ),
        "pipeline": ("POST", f"/v1/projects/{setup.project_id}/pipelines", {"name": name}),
        "pipeline rename": ("PATCH", f"/v1/pipelines/{setup.pipeline_id}", {"name": name}),
        "build branch": (
            "POST",
            f"/v1/projects/{setup.project_id}/builds",
            {"pipeline_id": setup.pipeline_id, "branch": name},
        ),
        "build trigger_ref": (
            "POST",
            f"/v1/projects/{setup.project_id}/builds",
            {"pipeline_id": setup.pipeline_id, "commit_sha": setup.head, "trigger_ref": name},
        ),
        "build changelog": (
            "POST",
            f"/v1/projects/{setup.project_id}/builds",
            {"pipeline_id": setup.pipeline_id, "changelog": name.replace("\n", "\x00")},
        ),
        "runner": ("POST", "/v1/runners/register", {"name": name}),
        "runner rename": ("PATCH", f"/v1/runners/{runner_id}", {"name": name}),
        "api token": ("POST", "/v1/api-tokens", {"name": name, "role": "qa_viewer"}),
        "enrollment token": ("POST", "/v1/runner-enrollment-tokens", {"label": name}),
        "invitation": (
            "POST",
            "/v1/users/invite",
            {"email": f"{name}@example.com", "role": "qa_viewer"},
        ),
    }
    replies = {}
    for what, (method, path, body) in calls.items():
        raw = json.dumps(body).encode()
        replies[what] = await setup.api.call(
            method,
            path,
            data=raw,
            token=setup.token,
            headers={"Content-Type": "application/json"},
        )
    return replies


@pytest.mark.parametrize("kind", HOSTILE_NAMES)
async def test_names_are_bounded_and_plain(api: Api, setup: Setup, kind: str) -> None:
    runner = await setup.runner("r")
    replies = await _named(api, setup, runner.id, HOSTILE_NAMES[kind])
    for what, reply in replies.items():
        assert reply.status == 400, (what, reply.status, reply.body)
        assert reply.code in ("invalid_input", "invalid_name", "invalid_email", "invalid_request")
    projects = await api.get("/v1/projects", token=setup.token)
    assert [p["name"] for p in projects.body["projects"]] == ["app"]


HOSTILE_FRAMES = {
    "nested 100000 deep": "[" * 100_000 + "]" * 100_000,
    "nested 65 deep": '{"id": 1, "op": "heartbeat", "status": ' + "[" * 65 + "]" * 65 + "}",
    "integer of 5000 digits": '{"id": 1' + "0" * 5000 + ', "op": "heartbeat"}',
    "id over 64 bits": '{"id": 18446744073709551616, "op": "heartbeat", "status": "online"}',
    "NaN": '{"id": 1, "op": "claim", "protocol_version": 4, "wait_seconds": NaN}',
    "lone surrogate": '{"id": 1, "op": "heartbeat", "status": "\\ud800"}',
}


async def test_the_runner_channel_answers_hostile_frames_and_stays_open(
    api: Api, setup: Setup
) -> None:
    runner = await setup.runner("r")
    headers = {"Authorization": f"Bearer {runner.token}"}
    async with api.client.websocket(f"/v1/runners/{runner.id}/channel", headers=headers) as ws:
        for kind, frame in HOSTILE_FRAMES.items():
            await ws.send(frame)
            reply = json.loads(await ws.receive())
            assert reply["ok"] is False, (kind, reply)
            assert (reply["status"], reply["code"]) == (400, "invalid_request"), (kind, reply)
        await ws.send(json.dumps({"id": 7, "op": "heartbeat", "status": "online"}))
        assert json.loads(await ws.receive())["ok"] is True


RAW_BODY_ROUTES = {
    ("POST", "/v1/webhooks/github"),
    ("POST", "/v1/webhooks/gitlab"),
    ("PUT", "/v1/artifacts/local-upload/<token>"),
}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"name": "x"}'),
        ("application/x-www-form-urlencoded", b"name=x"),
        ("multipart/form-data; boundary=x", b""),
        ("text/plain", b""),
    ],
)
async def test_state_changing_routes_take_only_json(
    app: QuartTrio, api: Api, owner_token: str, content_type: str, body: bytes
) -> None:
    """A page on another site can post forms and text/plain without asking; no route but
    the webhooks and the upload (which read their own bodies) accepts them."""
    raw_paths = {(method, re.sub(r"<[^>]*>", "<>", rule)) for method, rule in RAW_BODY_ROUTES}
    checked = 0
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) & set(STATE_CHANGING)):
            if (method, re.sub(r"<[^>]*>", "<>", rule.rule)) in raw_paths:
                continue
            path = re.sub(r"<[^>]*>", lambda _: str(uuid.uuid4()), rule.rule)
            for token in (None, owner_token):
                reply = await api.call(
                    method, path, data=body, token=token, headers={"Content-Type": content_type}
                )
                where = f"{method} {rule.rule}"
                assert (reply.status, reply.code) == (400, "invalid_request"), (where, reply.body)
                assert reply.body["details"] == "Content-Type must be application/json"
                checked += 1
    assert checked > 100


async def test_a_body_without_a_content_type_is_refused_but_no_body_is_fine(
    api: Api, owner_token: str
) -> None:
    reply = await api.call("POST", "/v1/api-tokens", data=b'{"name": "t"}', token=owner_token)
    assert (reply.status, reply.code) == (400, "invalid_request")
    # An optional-body route called with nothing at all.
    reply = await api.call("POST", "/v1/auth/local/login")
    assert reply.status == 200, reply.body


@pytest.mark.parametrize("kind", HOSTILE_BODIES)
async def test_webhooks_answer_a_hostile_payload_with_invalid_payload(api: Api, kind: str) -> None:
    for path, headers in (
        ("/v1/webhooks/github", {"X-Hub-Signature-256": "sha256=" + "0" * 64}),
        ("/v1/webhooks/gitlab", {"X-Gitlab-Token": "oore_" + "0" * 64}),
    ):
        reply = await api.post(
            path,
            data=HOSTILE_BODIES[kind],
            headers={**headers, "Content-Type": "application/json"},
        )
        assert (reply.status, reply.code) == (400, "invalid_payload"), (path, reply.body)


SQL_LIKE = "x' OR 1=1 -- %_\\ \"; DROP TABLE users; --"


async def test_searches_take_like_wildcards_literally(api: Api, setup: Setup, repo: Path) -> None:
    names = ["a_b", "axb", "p%q", "pxq", "s\\t", "sxt"]
    for name in names:
        await setup.runner(name)
        reply = await api.post(
            "/v1/projects",
            json={"name": name, "local_repository_path": str(repo)},
            token=setup.token,
        )
        assert reply.status in (200, 201), reply.body
        reply = await api.post(
            f"/v1/projects/{setup.project_id}/pipelines", json={"name": name}, token=setup.token
        )
        assert reply.status in (200, 201), reply.body
    for search, found in (("_", "a_b"), ("%", "p%q"), ("\\", "s\\t"), ("' OR 1=1 --", None)):
        query = urlencode({"q": search, "search": search})
        for path, key in (
            ("/v1/runners", "runners"),
            ("/v1/projects", "projects"),
            (f"/v1/projects/{setup.project_id}/pipelines", "pipelines"),
        ):
            reply = await api.get(f"{path}?{query}", token=setup.token)
            assert reply.status == 200, (path, reply.body)
            listed = [item["name"] for item in reply.body[key]]
            assert listed == ([] if found is None else [found]), (path, search, listed)


PAGING = {
    "negative or zero": ("limit=-5&offset=-5&per_page=0", (200, 400)),
    "huge": ("limit=9223372036854775807&offset=9223372036854775807", (200, 400)),
    "not a number": ("limit=ten&offset=1e3&page=-1&per_page=abc", (200, 400)),
    "empty or repeated": ("limit=&offset=&limit=1&offset=-1", (200, 400)),
}


async def test_every_list_route_takes_any_paging_without_failing(
    app: QuartTrio, api: Api, setup: Setup
) -> None:
    # Every route without an id in its path (the lists among them), but the OpenAPI
    # document, which takes no query and is slow to build.
    lists = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if "<" not in rule.rule and rule.rule != "/v1/openapi.json"
    ]
    lists.append(f"/v1/projects/{setup.project_id}/pipelines")
    for kind, (query, statuses) in PAGING.items():
        for path in lists:
            reply = await api.get(f"{path}?{query}", token=setup.token)
            assert reply.status < 500, (kind, path, reply.status, reply.body)
        for path in ("/v1/builds", "/v1/projects", "/v1/users", "/v1/runners", "/v1/audit-logs"):
            reply = await api.get(f"{path}?{query}", token=setup.token)
            assert reply.status in statuses, (kind, path, reply.status, reply.body)
            if reply.status == 400:
                assert reply.code in ("invalid_request", "invalid_input"), (path, reply.body)


def _string_fields(schema: dict[str, Any], components: dict[str, Any]) -> list[str]:
    """The top-level properties of a request schema that may hold a string."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    found = []
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf", [prop])
        if any(option.get("type") == "string" for option in options):
            found.append(name)
    return found


# SQL_LIKE carries the LIKE wildcards and the backslash too.
HOSTILE_STRINGS = [SQL_LIKE, "a\u0000b", "a\u001bb\u0007", "\u202e\u2066"]


async def test_every_string_field_of_every_body_takes_sql_and_control_characters(
    api: Api, setup: Setup
) -> None:
    """Each string field of each documented JSON body, alone, given each hostile string
    (on the setup's project and pipeline where the path names one): a 4xx or an answer,
    never a 500."""
    document = (await api.get("/v1/openapi.json")).body
    components = document.get("components", {}).get("schemas", {})
    known = {"project_id": setup.project_id, "pipeline_id": setup.pipeline_id}
    sent = 0
    for template, operations in document["paths"].items():
        path = re.sub(r"\{([^}]*)\}", lambda m: known.get(m[1], str(uuid.uuid4())), template)
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema")
            if schema is None or template == "/v1/auth/logout" or method == "delete":
                continue
            for field in _string_fields(schema, components):
                for value in HOSTILE_STRINGS:
                    reply = await api.call(
                        method.upper(),
                        path,
                        data=json.dumps({field: value}).encode(),
                        token=setup.token,
                        headers={"Content-Type": "application/json"},
                    )
                    where = (method, template, field, value)
                    assert reply.status < 500, (*where, reply.status, reply.body)
                    sent += 1
    assert sent > 200


async def test_sql_like_text_is_stored_and_returned_as_sent(api: Api, setup: Setup) -> None:
    reply = await api.call(
        "PATCH",
        f"/v1/projects/{setup.project_id}",
        json={"description": SQL_LIKE},
        token=setup.token,
    )
    assert reply.status == 200, reply.body
    shown = await api.get(f"/v1/projects/{setup.project_id}", token=setup.token)
    assert shown.body["project"]["description"] == SQL_LIKE
    runner = await setup.runner("r")
    reply = await api.call(
        "PATCH", f"/v1/runners/{runner.id}", json={"name": "r' OR 1=1 --"}, token=setup.token
    )
    assert reply.status == 200, reply.body
    listed = await api.get("/v1/runners", token=setup.token)
    assert [r["name"] for r in listed.body["runners"]] == ["r' OR 1=1 --"]


TRAVERSALS = [
    "..",
    "..%2f..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fpyproject.toml",
    "..%5c..%5c..%5cetc%5cpasswd",
    "a%00b",
]
LEAKED = ("root:x:0:0", "[project]", "BEGIN PRIVATE KEY", "encryption.key")


async def test_every_route_that_takes_a_name_or_path_stays_inside(
    app: QuartTrio, api: Api, setup: Setup
) -> None:
    """Each placeholder of every route (ids, names, tokens, the UI's asset paths) given a
    path that would leave its directory: a clear answer, never a 500 nor a file's bytes."""
    routes = {("GET", "/assets/<>"), ("GET", "/<>"), ("GET", "/install/<>")}
    for rule in app.url_map.iter_rules():
        if not rule.websocket and "<" in rule.rule:
            template = re.sub(r"<[^>]*>", "<>", rule.rule)
            routes.update((method, template) for method in (rule.methods or ()))
    checked = 0
    for method, template in sorted(routes):
        if method not in ("GET", "PUT", "DELETE"):
            continue
        for traversal in TRAVERSALS:
            path = template.replace("<>", traversal)
            reply = await api.call(
                method,
                path,
                data=b'{"value": "v"}' if method == "PUT" else None,
                token=setup.token,
                headers={"Content-Type": "application/json"} if method == "PUT" else None,
            )
            where = (method, path, reply.status)
            assert reply.status < 500, (*where, reply.body)
            text = json.dumps(reply.body) if isinstance(reply.body, dict) else reply.body
            assert not any(mark in (text or "") for mark in LEAKED), where
            checked += 1
    assert checked > 200
