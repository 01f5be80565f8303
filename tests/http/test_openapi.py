"""The OpenAPI document (oore/http/openapi.py): valid, every error answer and query
parameter declared, no untyped object, and real answers that fit what it says."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from quart import Blueprint, Response, jsonify
from quart_trio import QuartTrio

from oore.http import routes
from oore.http.errors import install_error_handlers
from oore.http.openapi import Provider
from oore.http.query import (
    QUERY_ATTRIBUTE,
    UndeclaredQuery,
    choice,
    integer,
    query,
    query_choice,
    query_int,
    query_raw,
    query_str,
    text,
)
from tests.http.artifacts_kit import running_job
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import Api
from tests.http.openapi_kit import Conformance

__all__ = ["repo", "setup"]

ERROR_REF = {"$ref": "#/components/schemas/Error"}
ROUTES = Path(routes.__file__).parent
READERS = {"query_str", "query_int", "query_choice", "query_raw"}
# The same reads through a QueryArgs (``args.text("q")``), as the views' answer functions
# shared with the lean listener make them.
ARGS_READERS = {"text", "number", "choice", "raw"}
# What the contract calls free JSON; nothing else in the document may be an untyped object.
FREE_FORM = {
    "settings": "a project's settings (contract §2.5: a free JSON object)",
    "properties": "the pipeline file schema's properties, each itself a JSON Schema",
}


@pytest.fixture
async def document(api: Api) -> dict[str, Any]:
    reply = await api.get("/v1/openapi.json")
    assert reply.status == 200
    found: dict[str, Any] = reply.body
    return found


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


async def test_the_document_is_valid_and_its_errors_have_one_schema(
    document: dict[str, Any],
) -> None:
    validate(document)
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "code"]
    assert set(error["properties"]) == {"error", "code", "details", "request_id"}


async def test_a_declared_body_is_required_as_the_server_requires_it(
    api: Api, owner_token: str, document: dict[str, Any]
) -> None:
    """Found by the fuzz run: bodies were documented as optional, so a client leaving one
    out did what the document allowed and got 400 invalid_request."""
    optional = [
        f"{method} {path}"
        for method, path, operation in operations(document)
        if "requestBody" in operation and operation["requestBody"].get("required") is not True
    ]
    assert not optional, optional
    no_body = await api.call("POST", "/v1/runner-enrollment-tokens", token=owner_token)
    assert (no_body.status, no_body.code) == (400, "invalid_request")


async def test_a_query_parameter_the_view_needs_is_documented_as_required(
    document: dict[str, Any],
) -> None:
    """Found by the fuzz run: the changelog preview without ``pipeline_id`` is refused
    with 400 invalid_request, so the document must not offer it as optional."""
    path = "/v1/projects/{project_id}/builds/changelog-preview"
    parameters = document["paths"][path]["get"]["parameters"]
    required = {p["name"]: p for p in parameters if p["in"] == "query" and p.get("required")}
    assert list(required) == ["pipeline_id"]
    pattern = re.compile(required["pipeline_id"]["schema"]["pattern"])
    # a blank value reads as none (400 invalid_request): the document does not offer it
    assert [bool(pattern.search(v)) for v in ("", "  ", "\t", "p-1", " p ")] == [
        False,
        False,
        False,
        True,
        True,
    ]


async def test_every_operation_documents_its_error_answers(document: dict[str, Any]) -> None:
    missing = []
    for method, path, operation in operations(document):
        answers = operation["responses"]
        failures = {int(status) for status in answers if int(status) >= 400}
        expected = set()
        if operation.get("security"):
            expected |= {401, 403}
        if "{" in path:
            expected |= {404}
        if "requestBody" in operation:
            expected |= {400, 413}
        if any(parameter["in"] == "query" for parameter in operation["parameters"]):
            expected |= {400}
        if not path.startswith("/v1/webhooks/"):
            expected |= {429}  # a credential from a client that guessed too often
        if not failures or not expected <= failures:
            missing.append(f"{method} {path}: {sorted(expected - failures) or 'no 4xx'}")
        for status in failures:
            if (path, status) == ("/readyz", 503):
                continue  # not ready answers its own model
            content = answers[str(status)]["content"]
            assert content == {"application/json": {"schema": ERROR_REF}}, (method, path)
            assert "`" in answers[str(status)]["description"]  # names its codes
    assert not missing, missing


async def test_route_specific_errors_are_named_with_their_codes(document: dict[str, Any]) -> None:
    cancel = document["paths"]["/v1/builds/{build_id}/cancel"]["post"]["responses"]
    assert "`invalid_transition`" in cancel["409"]["description"]
    assert "`store_unavailable`" in cancel["503"]["description"]
    assert "Retry-After" in cancel["503"]["headers"]
    stream = document["paths"]["/v1/builds/{build_id}/logs/stream"]["get"]["responses"]
    assert "`stream_limit`" in stream["429"]["description"]
    # The guard skips webhooks, and a public schema needs no database.
    github = document["paths"]["/v1/webhooks/github"]["post"]["responses"]
    assert "invalid_host" not in github.get("400", {}).get("description", "")
    assert "503" not in document["paths"]["/v1/pipelines/schema"]["get"]["responses"]


def untyped_objects(node: Any, where: str = "") -> Iterator[str]:
    """Object schemas that say nothing of their fields or values."""
    if isinstance(node, dict):
        if (
            node.get("type") == "object"
            and "properties" not in node
            and node.get("additionalProperties", True) is True
        ):
            yield where
        for key, value in node.items():
            yield from untyped_objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from untyped_objects(value, f"{where}/{index}")


async def test_no_untyped_object_remains(document: dict[str, Any]) -> None:
    found = list(untyped_objects(document))
    unexplained = [
        where
        for where in found
        if where.removesuffix("/anyOf/0").removesuffix("/additionalProperties").rsplit("/")[-1]
        not in FREE_FORM
    ]
    assert not unexplained, unexplained
    assert found  # the free-form values are still found (the walk works)


async def test_build_list_filters_are_documented(document: dict[str, Any]) -> None:
    parameters = {
        parameter["name"]: parameter
        for parameter in document["paths"]["/v1/builds"]["get"]["parameters"]
    }
    assert set(parameters) == {
        "project_id",
        "pipeline_id",
        "status",
        "branch",
        "sort",
        "direction",
        "limit",
        "offset",
    }
    assert parameters["sort"]["schema"]["enum"] == [
        "created_at",
        "status",
        "project_name",
        "pipeline_name",
        "branch",
    ]
    assert parameters["limit"]["schema"]["minimum"] == 1
    assert parameters["offset"]["schema"]["minimum"] == 0
    assert all(parameter["description"] for parameter in parameters.values())


def reads_in(function: ast.AsyncFunctionDef | ast.FunctionDef) -> set[str]:
    """The query parameter names a view's body reads through the helpers."""
    names = set()
    for node in ast.walk(function):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            if node.func.value.id != "args":
                continue
            if node.func.attr == "page":
                names |= {"limit", "offset"}
            elif node.func.attr in ARGS_READERS:
                argument = node.args[0]
                assert isinstance(argument, ast.Constant), ast.dump(node)
                assert isinstance(argument.value, str)
                names.add(argument.value)
            continue
        if not isinstance(node.func, ast.Name):
            continue
        if node.func.id == "query_page":
            names |= {"limit", "offset"}
        elif node.func.id in READERS:
            argument = node.args[0]
            assert isinstance(argument, ast.Constant), ast.dump(node)
            assert isinstance(argument.value, str)
            names.add(argument.value)
    return names


def calls_in(function: ast.AsyncFunctionDef | ast.FunctionDef) -> set[str]:
    return {
        node.func.id
        for node in ast.walk(function)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }


def route_views() -> Iterator[tuple[str, str, set[str], set[str]]]:
    """(module, view, names it reads, names it declares) for every top-level view; what
    the module's helpers read counts for the views that call them."""
    for source in sorted(ROUTES.glob("*.py")):
        module = importlib.import_module(f"oore.http.routes.{source.stem}")
        functions = {
            node.name: node
            for node in ast.parse(source.read_text()).body
            if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef)
        }
        for name, function in functions.items():
            reads, seen, waiting = set(), {name}, [function]
            while waiting:
                current = waiting.pop()
                reads |= reads_in(current)
                for called in calls_in(current) & set(functions) - seen:
                    seen.add(called)
                    waiting.append(functions[called])
            if name.startswith("_") or not function.decorator_list:
                continue  # a helper (or a view's answer function): checked through its callers
            declared = set(getattr(getattr(module, name), QUERY_ATTRIBUTE, {}))
            yield source.stem, name, reads, declared


async def test_every_query_parameter_a_view_reads_is_declared_and_documented(
    api: Api, document: dict[str, Any]
) -> None:
    views = list(route_views())
    assert any(name == "list_builds" and reads for _, name, reads, _ in views)
    undeclared = [
        f"{module}.{name}: {sorted(reads - declared)}"
        for module, name, reads, declared in views
        if not reads <= declared
    ]
    assert not undeclared, undeclared
    for source in ROUTES.glob("*.py"):
        assert "request.args" not in source.read_text(), source  # only through the helpers
    # What a view declares is what its operation lists.
    conformance = Conformance(document)
    for rule in api.app.url_map.iter_rules():
        declared = set(getattr(api.app.view_functions[rule.endpoint], QUERY_ATTRIBUTE, {}))
        if not declared or rule.websocket:
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in rule.methods or ():
            if method in {"HEAD", "OPTIONS"}:
                continue
            operation = conformance.operation(method, path)
            listed = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
            assert listed == declared, (method, path)


def test_the_drift_check_sees_an_undeclared_read() -> None:
    source = inspect.cleandoc(
        """
        async def view():
            page = query_page(default=1, maximum=2)
            return query_str("q"), query_choice("sort")
        """
    )
    [function] = ast.parse(source).body
    assert isinstance(function, ast.AsyncFunctionDef)
    assert reads_in(function) == {"limit", "offset", "q", "sort"}
    source = inspect.cleandoc(
        """
        async def answer(app, session, args):
            page = args.page(default=1, maximum=2)
            return args.text("q"), args.number("n"), args.choice("sort"), args.raw("t")
        """
    )
    [function] = ast.parse(source).body
    assert isinstance(function, ast.AsyncFunctionDef)
    assert reads_in(function) == {"limit", "offset", "q", "n", "sort", "t"}


async def test_reading_an_undeclared_parameter_is_a_programming_error() -> None:
    app = QuartTrio("drift")
    install_error_handlers(app)
    bp = Blueprint("drift", __name__)
    read: list[object] = []

    @bp.get("/declared")
    @query(text("q", "text"), integer("n", "a number"), choice("c", ("a", "b"), "one of"))
    async def declared() -> Response:
        read.extend([query_str("q"), query_int("n"), query_choice("c"), query_raw("q")])
        return jsonify({})

    @bp.get("/undeclared")
    @query(text("q", "text"))
    async def undeclared() -> Response:
        query_str("other")
        return jsonify({})

    @bp.get("/mistyped")
    @query(text("q", "text"))
    async def mistyped() -> Response:
        query_int("q")
        return jsonify({})

    app.register_blueprint(bp)
    client = app.test_client()
    assert (await client.get("/declared?q=%20x%20&n=3&c=b")).status_code == 200
    assert read == ["x", 3, "b", " x "]
    refused = await client.get("/declared?c=z")
    assert (refused.status_code, (await refused.get_json())["code"]) == (400, "invalid_input")
    async with app.test_request_context("/undeclared?other=1"):
        with pytest.raises(UndeclaredQuery, match="other"):
            await undeclared()
    async with app.test_request_context("/mistyped?q=1"):
        with pytest.raises(UndeclaredQuery, match="integer"):
            await mistyped()


async def test_real_answers_fit_the_document(
    api: Api, setup: Setup, document: dict[str, Any]
) -> None:
    conformance = Conformance(document)
    token = setup.token

    async def check(method: str, path: str, **kw: Any) -> Any:
        reply = await api.call(method, path, token=token, **kw)
        return conformance.check(method, path, reply)

    job = await running_job(setup)
    await job.runner.logs(job.build_id, [{"sequence": 1, "content": "hi", "stream": "stdout"}])
    queued = await setup.trigger(branch="main")
    await job.publish("app.apk", b"apk")

    listed = await check("GET", "/v1/builds?status=running,queued&sort=status&direction=asc")
    assert {build["id"] for build in listed.body["builds"]} == {job.build_id, queued["id"]}
    await check("GET", f"/v1/builds/{job.build_id}")
    await check("GET", f"/v1/builds/{queued['id']}")  # with its waiting_reason
    await check("GET", f"/v1/builds/{job.build_id}/logs?timestamps=true")
    await check("GET", f"/v1/builds/{job.build_id}/artifacts")
    await check("GET", f"/v1/projects/{setup.project_id}")
    await check("GET", f"/v1/projects/{setup.project_id}/pipelines")
    await check("GET", "/v1/runners")
    await check("GET", f"/v1/runners/{job.runner.id}")
    await check("GET", "/v1/settings/preferences")
    await check("GET", "/v1/settings/artifact-storage")
    await check("POST", f"/v1/builds/{queued['id']}/cancel")
    # Errors: each the documented status with the Error body.
    assert (await check("GET", "/v1/builds?limit=0")).code == "invalid_input"
    assert (await check("GET", "/v1/builds?offset=x")).code == "invalid_request"
    assert (await check("GET", "/v1/builds/nope")).status == 404
    assert (await check("POST", f"/v1/builds/{queued['id']}/cancel")).status == 409
    token = "not-a-token"
    assert (await check("GET", "/v1/runners")).code == "invalid_session"


async def test_the_document_is_built_once_and_served_as_a_copy(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    build_paths = Provider.build_paths

    def counting(self: Provider, rule: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        built.append(rule.rule)
        return build_paths(self, rule)

    monkeypatch.setattr(Provider, "build_paths", counting)
    first = await api.get("/v1/openapi.json")
    rules = len(built)
    assert rules > 100
    second = await api.get("/v1/openapi.json")
    assert len(built) == rules  # the second answer came from the first build
    assert second.body == first.body
    provider = api.app.extensions["QUART_SCHEMA"].openapi_provider
    provider.schema()["paths"].clear()  # a caller changing its copy changes nothing served
    assert (await api.get("/v1/openapi.json")).body == first.body
