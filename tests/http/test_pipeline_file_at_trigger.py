"""At trigger the server reads a local repository's ``.oore.yaml`` at the build's commit:
its ``runner_labels`` route the build and its ``timeout`` bounds it."""

from __future__ import annotations

from pathlib import Path

from tests.http.builds_kit import eventually, git, make_setup, repo
from tests.http.conftest import Api

__all__ = ["repo"]

STEPS_FILE = """\
version: 1
runner_labels: [gpu]
timeout: 1
steps:
  - name: train
    run: ./train.sh
"""


def commit(repo: Path, name: str, text: str) -> None:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", f"add {name}")


async def test_the_files_labels_route_the_build_and_its_timeout_ends_it(
    api: Api, owner_token: str, repo: Path
) -> None:
    commit(repo, ".oore.yaml", STEPS_FILE)
    setup = await make_setup(api, owner_token, repo, runner_labels=["linux"])
    build = await setup.trigger()
    assert build["runner_labels"] == ["gpu", "linux"]
    assert build["config_snapshot"]["timeout_seconds"] == 1
    plain = await setup.runner("plain", labels=["linux"])
    assert await plain.claim() is None
    gpu = await setup.runner("gpu", labels=["gpu", "linux"])
    job = await gpu.claim()
    assert job is not None and job["build_id"] == build["id"]
    await gpu.report(build["id"], "running")
    # The server's own bound is an hour: only the file's second ends the build.
    await eventually(setup, build["id"], "timed_out")
    detail = await setup.build(build["id"])
    assert detail["events"][-1]["reason"] == "build timeout exceeded"


async def test_the_explicit_config_path_is_read(api: Api, owner_token: str, repo: Path) -> None:
    commit(repo, "ci/train.yaml", STEPS_FILE)
    setup = await make_setup(
        api, owner_token, repo, config_path="ci/train.yaml", config_path_explicit=True
    )
    build = await setup.trigger()
    assert build["runner_labels"] == ["gpu"]


async def test_an_invalid_or_missing_file_adds_nothing(
    api: Api, owner_token: str, repo: Path
) -> None:
    setup = await make_setup(api, owner_token, repo, runner_labels=["linux"])
    missing = await setup.trigger()
    assert missing["runner_labels"] == ["linux"]
    assert "timeout_seconds" not in missing["config_snapshot"]
    commit(repo, ".oore.yaml", STEPS_FILE.replace("timeout: 1", "timeout: soon"))
    invalid = await setup.trigger()
    # The runner reads the same file from its checkout and fails the build, saying why.
    assert invalid["runner_labels"] == ["linux"]
    assert "timeout_seconds" not in invalid["config_snapshot"]
