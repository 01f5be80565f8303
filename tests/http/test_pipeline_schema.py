"""``GET /v1/pipelines/schema`` and ``POST /v1/pipelines/validate`` on the same file rules."""

from __future__ import annotations

import jsonschema
import yaml

from oore.domain.pipeline_schema import pipeline_file_schema
from tests.http.conftest import Api

SHELL_FILE = """\
version: 1
timeout: 900
runner_labels: [linux]
steps:
  - name: test
    run: ./run-tests.sh
    timeout: 600
  - name: lint
    run: ./lint.sh
    continue_on_error: true
  - name: collect logs
    run: tar czf logs.tgz logs
    if: failure()
artifacts:
  patterns: ["dist/*.tar.gz"]
"""


async def test_the_schema_is_public_and_is_the_validators(api: Api) -> None:
    reply = await api.get("/v1/pipelines/schema")
    assert reply.status == 200
    assert reply.body == pipeline_file_schema()
    jsonschema.Draft202012Validator.check_schema(reply.body)
    assert jsonschema.Draft202012Validator(reply.body).is_valid(yaml.safe_load(SHELL_FILE))


async def test_validate_takes_a_steps_file_without_platforms(api: Api, owner_token: str) -> None:
    reply = await api.post(
        "/v1/pipelines/validate", json={"repository_yaml": SHELL_FILE}, token=owner_token
    )
    assert (reply.status, reply.body) == (200, {"valid": True, "errors": []})


async def test_validate_names_the_step_problems(api: Api, owner_token: str) -> None:
    text = (
        "version: 1\nsteps:\n  - name: a\n    run: x\n    if: failure\n"
        "  - name: a\n    run: ''\n    timeout: 0\n"
    )
    reply = await api.post(
        "/v1/pipelines/validate", json={"repository_yaml": text}, token=owner_token
    )
    assert reply.status == 200
    assert reply.body == {
        "valid": False,
        "errors": [
            "steps[0].if: must be one of success(), failure(), always(), got 'failure'",
            "steps[1].name: duplicate step name 'a' (also at steps[0])",
            "steps[1].run: must not be blank",
            "steps[1].timeout: must be a whole number of seconds from 1 to 86400, got 0",
        ],
    }


async def test_without_platforms_or_steps_the_file_says_so(api: Api, owner_token: str) -> None:
    reply = await api.post(
        "/v1/pipelines/validate", json={"repository_yaml": "version: 1\n"}, token=owner_token
    )
    assert reply.body["errors"] == [
        "platforms: required, a list of: android, ios, macos (or give steps)"
    ]
