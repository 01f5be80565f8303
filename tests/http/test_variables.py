"""Project and pipeline variables and secrets: the API, the claim answer, log masking."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from oore.domain.logs import MASK
from oore.domain.users import Role
from oore.runtime import Runtime
from oore.services.artifact_storage import ArtifactsConfig
from oore.services.variables import Variables
from oore.store import Store
from tests.http.builds_kit import Setup, make_setup, repo, setup
from tests.http.conftest import Api, FakeClock, UserFactory
from tests.http.test_build_logs import Events, read_stream, served

__all__ = ["repo", "served", "setup"]

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

SECRET = "s3cr3t-deploy-key-4f9a"
PLAIN = "plain-value-visible"


async def put(setup: Setup, scope: str, **body: Any) -> Any:
    return await setup.api.post(f"/v1/{scope}/variables", json=body, token=setup.token)


def project(setup: Setup) -> str:
    return f"projects/{setup.project_id}"


def pipeline(setup: Setup) -> str:
    return f"pipelines/{setup.pipeline_id}"


async def test_create_list_update_delete_without_ever_answering_a_secret(setup: Setup) -> None:
    api, token = setup.api, setup.token
    created = await put(setup, project(setup), name="DEPLOY_KEY", value=SECRET, secret=True)
    assert created.status == 201, created.body
    assert "value" not in created.body["variable"] and created.body["variable"]["secret"]
    plain = await put(setup, project(setup), name="MODE", value=PLAIN)
    assert plain.status == 201 and plain.body["variable"]["value"] == PLAIN
    again = await api.call(
        "PUT",
        f"/v1/{project(setup)}/variables/MODE",
        json={"value": "other", "secret": False},
        token=token,
    )
    assert again.status == 200 and again.body["variable"]["value"] == "other"
    listed = await api.get(f"/v1/{project(setup)}/variables", token=token)
    assert listed.status == 200
    assert [(v["name"], v.get("value")) for v in listed.body["variables"]] == [
        ("DEPLOY_KEY", None),
        ("MODE", "other"),
    ]
    own = await put(setup, pipeline(setup), name="MODE", value="pipeline-mode")
    assert own.status == 201 and own.body["variable"]["scope"] == "pipeline"
    listed = await api.get(f"/v1/{pipeline(setup)}/variables", token=token)
    assert [v["name"] for v in listed.body["variables"]] == ["MODE"]

    gone = await api.call("DELETE", f"/v1/{project(setup)}/variables/MODE", token=token)
    assert gone.status == 200, gone.body
    gone = await api.call("DELETE", f"/v1/{project(setup)}/variables/MODE", token=token)
    assert (gone.status, gone.body["code"]) == (404, "not_found")

    audit = await api.get("/v1/audit-logs?resource_type=variable", token=token)
    assert audit.status == 200, audit.body
    actions = sorted(e["action"] for e in audit.body["entries"] if e["resource_type"] == "variable")
    assert actions == [
        "variable_created",
        "variable_created",
        "variable_created",
        "variable_deleted",
        "variable_updated",
    ]
    everything = json.dumps([audit.body, listed.body, created.body])
    assert SECRET not in everything


@pytest.mark.parametrize(
    "body",
    [
        {"name": "1BAD", "value": "x"},
        {"name": "has-dash", "value": "x"},
        {"name": "", "value": "x"},
        {"name": "A" * 129, "value": "x"},
        {"name": "OK", "value": "x" * 4097},
        {"name": "OK", "value": 5},
        {"name": "OK", "value": "x", "secret": "yes"},
        {"name": "OK"},
    ],
)
async def test_bad_input_is_a_400(setup: Setup, body: dict[str, Any]) -> None:
    reply = await put(setup, project(setup), **body)
    assert reply.status == 400 and reply.body["code"] == "invalid_input", reply.body


async def test_unknown_or_hidden_scopes_are_404_and_members_need_maintainer(
    setup: Setup, make_user: UserFactory
) -> None:
    api = setup.api
    unknown = "00000000-0000-4000-8000-000000000001"
    for scope in (f"projects/{unknown}", f"pipelines/{unknown}", "pipelines/nope"):
        reply = await api.get(f"/v1/{scope}/variables", token=setup.token)
        assert reply.status == 404, reply.body
    developer = await make_user(Role.DEVELOPER)
    stranger = await api.get(f"/v1/{project(setup)}/variables", token=developer.token)
    assert stranger.status == 404
    added = await api.post(
        f"/v1/projects/{setup.project_id}/members",
        json={"user_id": developer.user.id, "role": "developer"},
        token=setup.token,
    )
    assert added.status == 201, added.body
    assert (await api.get(f"/v1/{project(setup)}/variables", token=developer.token)).status == 200
    write = await api.post(
        f"/v1/{project(setup)}/variables",
        json={"name": "X", "value": "y"},
        token=developer.token,
    )
    assert (write.status, write.body["code"]) == (403, "permission_denied")


async def test_the_runner_holding_the_build_gets_the_values_and_every_log_masks_secrets(
    api: Api, owner_token: str, repo: Path, served: str
) -> None:
    setup = await make_setup(api, owner_token, repo)
    assert (await put(setup, project(setup), name="TOKEN", value=SECRET, secret=True)).status == 201
    assert (await put(setup, project(setup), name="MODE", value="project")).status == 201
    assert (await put(setup, pipeline(setup), name="MODE", value="pipeline")).status == 201
    build = await setup.trigger()
    runner = await setup.runner()
    job = await runner.claim()
    assert job is not None
    assert job["variables"] == [
        {"name": "MODE", "value": "pipeline", "secret": False},
        {"name": "TOKEN", "value": SECRET, "secret": True},
    ]
    assert SECRET not in json.dumps(job["config_snapshot"])
    assert (await runner.report(build["id"], "running")).status == 200

    events = Events()
    auth = {"Authorization": f"Bearer {owner_token}"}
    url = f"{served}/v1/builds/{build['id']}/logs/stream"
    half = len(SECRET) // 2
    lines = [
        f"the token is {SECRET}!",
        f"split: {SECRET[:half]}",
        SECRET[half:],
        "mode pipeline",
    ]
    async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:
        nursery.start_soon(read_stream, client, url, auth, events)
        chunks = [
            {"sequence": n, "content": text, "stream": "stdout"} for n, text in enumerate(lines)
        ]
        assert (await runner.logs(build["id"], chunks)).status == 200
        assert (await runner.report(build["id"], "succeeded", exit_code=0)).status == 200
    streamed = [entry["content"] for entry in events.logs]
    stored = await api.get(f"/v1/builds/{build['id']}/logs", token=owner_token)
    kept = [line["content"] for line in stored.body["logs"]]
    assert streamed == kept
    assert kept[0] == f"the token is {MASK}!" and kept[3] == "mode pipeline"
    assert MASK in kept[1] and SECRET[half:] not in kept[2]
    answers = [
        stored.body,
        (await api.get(f"/v1/builds/{build['id']}", token=owner_token)).body,
        (await api.get(f"/v1/{project(setup)}/variables", token=owner_token)).body,
        (await api.get(f"/v1/pipelines/{setup.pipeline_id}", token=owner_token)).body,
    ]
    assert SECRET not in json.dumps(answers) and SECRET not in json.dumps(events.logs)
    # Another runner polling the job learns nothing of the variables.
    state = await runner.job(build["id"])
    assert SECRET not in json.dumps(state.body)


async def test_a_scope_holds_at_most_128_variables(setup: Setup) -> None:
    for n in range(128):
        reply = await put(setup, pipeline(setup), name=f"V{n}", value="x")
        assert reply.status == 201, reply.body
    over = await put(setup, pipeline(setup), name="ONE_MORE", value="x")
    assert (over.status, over.body["code"]) == (409, "too_many_variables")
    # Replacing one is still allowed, and the project has its own 128.
    assert (await put(setup, pipeline(setup), name="V0", value="y")).status == 200
    assert (await put(setup, project(setup), name="ONE_MORE", value="x")).status == 201


async def test_after_a_restart_the_stored_secrets_are_masked(
    setup: Setup,
    store: Store,
    runtime: Runtime,
    clock: FakeClock,
    artifacts_config: ArtifactsConfig,
) -> None:
    """A daemon that restarted does not know what it handed out: it masks the stored values."""
    assert (await put(setup, project(setup), name="K", value=SECRET, secret=True)).status == 201
    build = await setup.trigger()
    runner = await setup.runner()
    assert await runner.claim() is not None
    fresh = Variables(store, clock, runtime.audit, runtime.access, artifacts_config.secrets)
    found = await store.builds.get(build["id"])
    assert found is not None
    assert await fresh.secrets_to_mask(found) == (SECRET,)
