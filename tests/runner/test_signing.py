"""Signing material on the runner: private files, variables, masking, always removed."""

from __future__ import annotations

import base64
import hashlib
import stat
import tempfile
from pathlib import Path

import pytest
import trio

from oore.domain.logs import MASK
from oore.domain.signing import AndroidSigningMaterial
from oore.runner.agent import Agent
from oore.runner.client import RunnerClient
from oore.runner.signing import SigningFilesError, android_signing_files
from tests.runner.server import FakeServer, job
from tests.runner.test_agent import Terminal, build_yaml, client, config, repo_with, server

__all__ = ["client", "server"]

KEYSTORE = b"\x00keystore bytes\xff" * 50
STORE_PASSWORD = "store-secret-1f2e"
KEY_PASSWORD = "key-secret-9a8b"


def material(build_type: str = "release", filename: str = "upload.jks") -> AndroidSigningMaterial:
    return AndroidSigningMaterial(
        build_type,  # type: ignore[arg-type]
        filename,
        base64.b64encode(KEYSTORE).decode(),
        STORE_PASSWORD,
        "upload",
        KEY_PASSWORD,
    )


def empty(directory: Path) -> bool:
    return not any(directory.iterdir())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def contents(path: Path) -> bytes:
    return path.read_bytes()


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where temporary directories go for this test (empty at the start)."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


async def test_keystores_are_private_files_named_by_variables_and_removed(
    temp_root: Path,
) -> None:
    both = [material("debug", "same.jks"), material("release", "same.jks")]
    async with android_signing_files(both) as files:
        assert files.directory.parent == temp_root
        assert mode(files.directory) == 0o700
        for build_type in ("DEBUG", "RELEASE"):
            path = Path(files.env[f"OORE_ANDROID_{build_type}_KEYSTORE_PATH"])
            assert path.name == "same.jks" and contents(path) == KEYSTORE
            assert mode(path) == 0o600 and mode(path.parent) == 0o700
            assert files.env[f"OORE_ANDROID_{build_type}_STORE_PASSWORD"] == STORE_PASSWORD
            assert files.env[f"OORE_ANDROID_{build_type}_KEY_ALIAS"] == "upload"
            assert files.env[f"OORE_ANDROID_{build_type}_KEY_PASSWORD"] == KEY_PASSWORD
        assert set(files.secrets) == {STORE_PASSWORD, KEY_PASSWORD}
    assert empty(temp_root)


async def test_the_directory_goes_when_the_build_fails_or_is_cancelled(temp_root: Path) -> None:
    with pytest.raises(RuntimeError):
        async with android_signing_files([material()]):
            raise RuntimeError("the steps failed")
    assert empty(temp_root)
    with trio.CancelScope() as scope:
        async with android_signing_files([material()]):
            scope.cancel()
            await trio.sleep_forever()
    assert empty(temp_root)
    broken = AndroidSigningMaterial("debug", "d.jks", "not base64!", "p" * 6, "a", "k" * 6)
    with pytest.raises(SigningFilesError, match="debug keystore is not valid base64"):
        async with android_signing_files([material(), broken]):
            pass
    assert empty(temp_root)


SIGNING_YAML = build_yaml(
    'test "$(stat -c %a "$OORE_ANDROID_RELEASE_KEYSTORE_PATH")" = 600',
    'sha256sum < "$OORE_ANDROID_RELEASE_KEYSTORE_PATH"',
    'echo "store $OORE_ANDROID_RELEASE_STORE_PASSWORD key $OORE_ANDROID_RELEASE_KEY_PASSWORD"',
    'echo "alias $OORE_ANDROID_RELEASE_KEY_ALIAS debug=${OORE_ANDROID_DEBUG_KEYSTORE_PATH-none}"',
    'exit "$EXIT_CODE"',
)


async def _run(
    tmp_path: Path, server: FakeServer, client: RunnerClient, exit_code: int
) -> list[str]:
    repo, sha = repo_with(tmp_path, SIGNING_YAML)
    claimed = job(repo, sha)
    claimed["signing"] = {"android": True}
    claimed["variables"] = [{"name": "EXIT_CODE", "value": str(exit_code), "secret": False}]
    server.add_job(claimed)
    agent = Agent(client, config(tmp_path), credential="enroll", say=Terminal())
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await server.wait_until(lambda: len(server.statuses("build-1")) == 2)
        agent.stop()
    assert server.signing_tokens == [claimed["signing_token"]]
    return [content for _, content in server.log_lines("build-1")]


async def test_a_build_signs_with_the_fetched_material_and_never_logs_the_passwords(
    tmp_path: Path, temp_root: Path, server: FakeServer, client: RunnerClient
) -> None:
    server.android_signing = {"release": material().to_json()}
    lines = await _run(tmp_path, server, client, exit_code=0)
    assert server.statuses("build-1") == ["running", "succeeded"], lines
    assert f"{hashlib.sha256(KEYSTORE).hexdigest()}  -" in lines
    assert f"store {MASK} key {MASK}" in lines
    assert "alias upload debug=none" in lines
    assert not any(STORE_PASSWORD in line or KEY_PASSWORD in line for line in lines)
    assert empty(temp_root)


async def test_a_failed_build_leaves_no_keystore_behind(
    tmp_path: Path, temp_root: Path, server: FakeServer, client: RunnerClient
) -> None:
    server.android_signing = {"release": material().to_json()}
    lines = await _run(tmp_path, server, client, exit_code=3)
    assert server.reports["build-1"][-1]["exit_code"] == 3, lines
    assert empty(temp_root)


async def test_a_build_whose_signing_cannot_be_fetched_fails_saying_so(
    tmp_path: Path, temp_root: Path, server: FakeServer, client: RunnerClient
) -> None:
    lines = await _run(tmp_path, server, client, exit_code=0)
    final = server.reports["build-1"][-1]
    assert final["status"] == "failed"
    assert final["error_message"] == (
        "could not fetch the Android signing material: "
        "409 job_not_active: The build is not assigned or running"
    )
    assert f"[oore] {final['error_message']}" in lines
    assert not any(line.startswith("[oore] step") for line in lines), "no step ran"
    assert empty(temp_root)
