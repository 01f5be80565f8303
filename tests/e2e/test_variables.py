"""Server-side variables and secrets reach a real build run by a real ``oore runner``.

The repository has a ``.oore.yaml`` with its own ``env``: the pipeline's UI env and the
project's and pipeline's variables apply all the same, the file overrides a plain
variable but not a secret, and neither a server-side secret nor a value the file marks
``secret: true`` appears in the stored log, while the process saw the real values.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import DaemonFactory
from tests.e2e.test_runner_agent import Api, committed_repo, runners

__all__ = ["runners"]

SECRET = "hunter2-supersecret-from-the-server"
FILE_SECRET = "file-secret-value-7d1c"
UI_VALUE = "ui-env-value-3b8e"

OORE_YAML = f"""\
version: 1
platforms: [android]
env:
  - {{key: MODE, value: from-file}}
  - {{key: DEPLOY_KEY, value: the-file-tries-to-override}}
  - {{key: FILE_SECRET, value: {FILE_SECRET}, secret: true}}
commands:
  build:
    - 'echo "key: $DEPLOY_KEY"'
    - 'echo "file secret: $FILE_SECRET"'
    - 'echo "mode: $MODE other: $OTHER"'
    - 'printf %s "$DEPLOY_KEY" | sha256sum'
    - 'printf %s "$UI_VAR" | sha256sum'
"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_server_secret_reaches_the_process_and_never_the_log(
    make_daemon: DaemonFactory,
    runners: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    repo = committed_repo(tmp_path / "repo", {".oore.yaml": OORE_YAML})
    daemon = make_daemon().start()
    with daemon.client() as client:
        api = Api.local_owner(client)
        project = api.project("app", repo)
        pipeline = api.pipeline(
            project["id"],
            name="ci",
            execution_config={
                "platforms": ["android"],
                "env": [{"key": "UI_VAR", "value": UI_VALUE}],
            },
        )
        for scope, name, value, secret in (
            (f"projects/{project['id']}", "DEPLOY_KEY", SECRET, True),
            (f"projects/{project['id']}", "MODE", "server-mode", False),
            (f"pipelines/{pipeline['id']}", "OTHER", "server-other", False),
        ):
            api.call(
                "POST",
                f"/v1/{scope}/variables",
                {"name": name, "value": value, "secret": secret},
                expect=201,
            )
        runners(daemon.url, api.token, "a", "any")
        build = api.trigger(project["id"], pipeline["id"])
        done = api.finished(build["id"])
        texts = [line["content"] for line in api.logs(build["id"])]
        assert done["build"]["status"] == "succeeded", (done, texts)
        # The process had the real values: their digests are in the log.
        assert f"{sha(SECRET)}  -" in texts
        assert f"{sha(UI_VALUE)}  -" in texts
        # The log shows the masks, and the file's env overrode only the plain variable.
        assert "key: ********" in texts
        assert "file secret: ********" in texts
        assert "mode: from-file other: server-other" in texts
        assert any("sets DEPLOY_KEY, which is a secret" in text for text in texts), texts
        everything = "\n".join(texts)
        for value in (SECRET, FILE_SECRET, "the-file-tries-to-override"):
            assert value not in everything
        answers = [
            api.call("GET", f"/v1/builds/{build['id']}"),
            api.call("GET", f"/v1/projects/{project['id']}/variables"),
            api.call("GET", "/v1/audit-logs"),
        ]
        assert SECRET not in repr(answers)
    assert SECRET not in (tmp_path / "runner-a.log").read_text()
    assert daemon.stop() == 0


STEPS_YAML = f"""\
version: 1
steps:
  - name: override
    env:
      - {{key: DEPLOY_KEY, value: the-step-tries-to-override}}
      - {{key: STEP_SECRET, value: {FILE_SECRET}, secret: true}}
    run: |
      printf %s "$DEPLOY_KEY" | sha256sum
      echo "step secret: $STEP_SECRET"
"""


def test_a_steps_env_never_overrides_a_server_secret(
    make_daemon: DaemonFactory,
    runners: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    repo = committed_repo(tmp_path / "repo", {".oore.yaml": STEPS_YAML})
    daemon = make_daemon().start()
    with daemon.client() as client:
        api = Api.local_owner(client)
        project = api.project("app", repo)
        pipeline = api.pipeline(project["id"], name="ci")
        api.call(
            "POST",
            f"/v1/pipelines/{pipeline['id']}/variables",
            {"name": "DEPLOY_KEY", "value": SECRET, "secret": True},
            expect=201,
        )
        runners(daemon.url, api.token, "a", "any")
        build = api.trigger(project["id"], pipeline["id"])
        done = api.finished(build["id"])
        texts = [line["content"] for line in api.logs(build["id"])]
        assert done["build"]["status"] == "succeeded", (done, texts)
        assert f"{sha(SECRET)}  -" in texts  # the secret's value, not the step's
        assert "step secret: ********" in texts
        assert any("step 'override' sets DEPLOY_KEY" in text for text in texts), texts
        everything = "\n".join(texts)
        for value in (SECRET, FILE_SECRET, "the-step-tries-to-override"):
            assert value not in everything
    assert daemon.stop() == 0
