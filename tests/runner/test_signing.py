"""Signing material on the runner: private files, variables, masking, always removed."""

from __future__ import annotations

import base64
import hashlib
import re
import stat
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from oore.domain.ios_signing import IosProfileMaterial, IosSigningMaterial
from oore.domain.logs import MASK
from oore.domain.signing import AndroidSigningMaterial
from oore.runner.agent import Agent
from oore.runner.client import RunnerClient
from oore.runner.signing import SigningFilesError, signing_files
from tests.runner.server import FakeServer, job
from tests.runner.test_agent import Terminal, build_yaml, client, config, repo_with, server

__all__ = ["client", "server"]

KEYSTORE = b"\x00keystore bytes\xff" * 50
STORE_PASSWORD = "store-secret-1f2e"
KEY_PASSWORD = "key-secret-9a8b"
P12 = b"0\x82\x0a\x00 pkcs12 \xff\x00" * 40
P12_PASSWORD = "p12-secret-4d7c"
PROFILES = {
    "com.example.app": b"<plist>app</plist>\x00\xff",
    "com.example.app.widget": b"<plist>widget</plist>\x01",
}


def material(build_type: str = "release", filename: str = "upload.jks") -> AndroidSigningMaterial:
    return AndroidSigningMaterial(
        build_type,  # type: ignore[arg-type]
        filename,
        base64.b64encode(KEYSTORE).decode(),
        STORE_PASSWORD,
        "upload",
        KEY_PASSWORD,
    )


def ios(*, p12: bool = True) -> IosSigningMaterial:
    """Two profiles under the same file name (each bundle id gets its own folder)."""
    profiles = tuple(
        IosProfileMaterial(
            bundle_id,
            "same.mobileprovision",
            base64.b64encode(content).decode(),
            profile_uuid=f"uuid-{number}" if number == 1 else None,
            profile_name=f"Profile {number}",
        )
        for number, (bundle_id, content) in enumerate(PROFILES.items(), start=1)
    )
    return IosSigningMaterial(
        "manual" if p12 else "api",
        "TEAM123456",
        "ad_hoc",
        "dist.p12" if p12 else None,
        base64.b64encode(P12).decode() if p12 else None,
        P12_PASSWORD if p12 else None,
        profiles,
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
    async with signing_files(both) as files:
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


async def test_ios_material_is_private_files_beside_the_keystores_named_by_variables(
    temp_root: Path,
) -> None:
    async with signing_files([material()], ios()) as files:
        env = files.env
        assert Path(env["OORE_ANDROID_RELEASE_KEYSTORE_PATH"]).parent.parent == files.directory
        p12 = Path(env["OORE_IOS_P12_PATH"])
        assert p12 == files.directory / "ios" / "certificate" / "dist.p12"
        assert contents(p12) == P12 and mode(p12) == 0o600
        profiles = Path(env["OORE_IOS_PROFILES_DIR"])
        assert profiles == files.directory / "ios" / "profiles"
        for folder in (profiles, profiles.parent, p12.parent):
            assert mode(folder) == 0o700
        assert env["OORE_IOS_PROFILE_COUNT"] == "2"
        for number, (bundle_id, content) in enumerate(PROFILES.items(), start=1):
            path = Path(env[f"OORE_IOS_PROFILE_{number}_PATH"])
            assert path == profiles / bundle_id / "same.mobileprovision"
            assert contents(path) == content
            assert mode(path) == 0o600 and mode(path.parent) == 0o700
            assert env[f"OORE_IOS_PROFILE_{number}_BUNDLE_ID"] == bundle_id
            assert env[f"OORE_IOS_PROFILE_{number}_NAME"] == f"Profile {number}"
        assert env["OORE_IOS_PROFILE_1_UUID"] == "uuid-1"
        assert "OORE_IOS_PROFILE_2_UUID" not in env
        ios_env = {key: value for key, value in env.items() if key.startswith("OORE_IOS_")}
        assert {key: ios_env[key] for key in ios_env if "PROFILE_" not in key} == {
            "OORE_IOS_SIGNING_MODE": "manual",
            "OORE_IOS_TEAM_ID": "TEAM123456",
            "OORE_IOS_EXPORT_METHOD": "ad_hoc",
            "OORE_IOS_P12_PATH": str(p12),
            "OORE_IOS_P12_PASSWORD": P12_PASSWORD,
            "OORE_IOS_PROFILES_DIR": str(profiles),
        }
        assert set(files.secrets) == {STORE_PASSWORD, KEY_PASSWORD, P12_PASSWORD}
    assert empty(temp_root)
    # Without a P12 (api mode) there is no certificate and no P12 variable.
    async with signing_files(ios=ios(p12=False)) as files:
        assert not (files.directory / "ios" / "certificate").exists()
        assert "OORE_IOS_P12_PATH" not in files.env and "OORE_IOS_P12_PASSWORD" not in files.env
        assert files.env["OORE_IOS_SIGNING_MODE"] == "api"
        assert files.secrets == ()
    assert empty(temp_root)


async def test_the_directory_goes_when_the_build_fails_or_is_cancelled(temp_root: Path) -> None:
    with pytest.raises(RuntimeError):
        async with signing_files([material()]):
            raise RuntimeError("the steps failed")
    assert empty(temp_root)
    with trio.CancelScope() as scope:
        async with signing_files([material()]):
            scope.cancel()
            await trio.sleep_forever()
    assert empty(temp_root)
    broken = AndroidSigningMaterial("debug", "d.jks", "not base64!", "p" * 6, "a", "k" * 6)
    with pytest.raises(SigningFilesError, match="debug keystore is not valid base64"):
        async with signing_files([material(), broken]):
            pass
    assert empty(temp_root)
    bad = IosProfileMaterial("com.example.app", "a.mobileprovision", "no!")
    damaged = replace(ios(), profiles=(bad,))
    with pytest.raises(
        SigningFilesError,
        match=re.escape("provisioning profile of com.example.app is not valid base64"),
    ):
        async with signing_files([material()], damaged):
            pass
    assert empty(temp_root)


SIGNING_YAML = build_yaml(
    'test "$(stat -c %a "$OORE_ANDROID_RELEASE_KEYSTORE_PATH")" = 600',
    'sha256sum < "$OORE_ANDROID_RELEASE_KEYSTORE_PATH"',
    'echo "store $OORE_ANDROID_RELEASE_STORE_PASSWORD key $OORE_ANDROID_RELEASE_KEY_PASSWORD"',
    'echo "alias $OORE_ANDROID_RELEASE_KEY_ALIAS debug=${OORE_ANDROID_DEBUG_KEYSTORE_PATH-none}"',
    'exit "$EXIT_CODE"',
)


IOS_YAML = build_yaml(
    'test "$(stat -c %a "$OORE_IOS_P12_PATH")" = 600',
    'sha256sum < "$OORE_IOS_P12_PATH"',
    'sha256sum < "$OORE_IOS_PROFILE_2_PATH"',
    'echo "$OORE_IOS_SIGNING_MODE $OORE_IOS_TEAM_ID $OORE_IOS_EXPORT_METHOD"',
    'echo "profiles $OORE_IOS_PROFILE_COUNT $OORE_IOS_PROFILE_2_BUNDLE_ID"',
    'ls "$OORE_IOS_PROFILES_DIR"',
    'echo "p12 $OORE_IOS_P12_PASSWORD"',
    'echo "android ${OORE_ANDROID_RELEASE_KEYSTORE_PATH-none}"',
    'exit "$EXIT_CODE"',
)


async def _run(
    tmp_path: Path,
    server: FakeServer,
    client: RunnerClient,
    exit_code: int,
    signing: dict[str, bool] | None = None,
    yaml: str = SIGNING_YAML,
) -> list[str]:
    repo, sha = repo_with(tmp_path, yaml)
    claimed = job(repo, sha)
    claimed["signing"] = signing or {"android": True}
    claimed["variables"] = [{"name": "EXIT_CODE", "value": str(exit_code), "secret": False}]
    server.add_job(claimed)
    agent = Agent(client, config(tmp_path), credential="enroll", say=Terminal())
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await server.wait_until(lambda: len(server.statuses("build-1")) == 2)
        agent.stop()
    # One fetch per platform the claim names, each with the claim's signing token.
    assert server.signing_tokens == [claimed["signing_token"]] * sum(claimed["signing"].values())
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


def sha(data: bytes) -> str:
    return f"{hashlib.sha256(data).hexdigest()}  -"


async def test_a_build_signs_with_the_ios_material_and_never_logs_the_p12_password(
    tmp_path: Path, temp_root: Path, server: FakeServer, client: RunnerClient
) -> None:
    server.ios_signing = {"bundle": ios().to_json()}
    lines = await _run(tmp_path, server, client, 0, {"android": False, "ios": True}, IOS_YAML)
    assert server.statuses("build-1") == ["running", "succeeded"], lines
    assert sha(P12) in lines and sha(PROFILES["com.example.app.widget"]) in lines
    assert "manual TEAM123456 ad_hoc" in lines
    assert "profiles 2 com.example.app.widget" in lines
    assert "com.example.app" in lines and "com.example.app.widget" in lines
    assert f"p12 {MASK}" in lines and "android none" in lines
    assert not any(P12_PASSWORD in line for line in lines)
    assert any("iOS signing (manual, ad_hoc, 2 provisioning profiles)" in line for line in lines)
    assert empty(temp_root)


async def test_a_failed_build_with_both_platforms_leaves_nothing_behind(
    tmp_path: Path, temp_root: Path, server: FakeServer, client: RunnerClient
) -> None:
    server.android_signing = {"release": material().to_json()}
    server.ios_signing = {"bundle": ios().to_json()}
    lines = await _run(tmp_path, server, client, 4, {"android": True, "ios": True}, IOS_YAML)
    assert server.reports["build-1"][-1]["exit_code"] == 4, lines
    assert sha(P12) in lines and f"p12 {MASK}" in lines
    android = next(line for line in lines if line.startswith("android "))
    assert android.endswith("/release/upload.jks")
    assert empty(temp_root)


async def test_ios_signing_disabled_since_the_claim_is_said_and_skipped(
    tmp_path: Path, temp_root: Path, server: FakeServer, client: RunnerClient
) -> None:
    server.android_signing = {"release": material().to_json()}
    server.ios_signing = {}
    lines = await _run(tmp_path, server, client, 0, {"android": True, "ios": True})
    assert server.statuses("build-1") == ["running", "succeeded"], lines
    assert "[oore] iOS signing is no longer enabled for this pipeline" in lines
    assert f"store {MASK} key {MASK}" in lines
    assert empty(temp_root)


async def test_ios_signing_that_cannot_be_fetched_fails_the_build(
    tmp_path: Path, temp_root: Path, server: FakeServer, client: RunnerClient
) -> None:
    # Android fetched, iOS refused: the build fails before any step, nothing is left.
    server.android_signing = {"release": material().to_json()}
    lines = await _run(tmp_path, server, client, 0, {"android": True, "ios": True}, IOS_YAML)
    final = server.reports["build-1"][-1]
    assert final["status"] == "failed"
    assert final["error_message"] == (
        "could not fetch the iOS signing material: "
        "409 job_not_active: The build is not assigned or running"
    )
    assert f"[oore] {final['error_message']}" in lines
    assert not any(line.startswith("[oore] step") for line in lines), "no step ran"
    assert empty(temp_root)
