"""Android release signing and iOS signing reach a real build run by a real ``oore runner``.

The pipeline's release profile and its iOS signing are stored through the API; the build
finds the keystore, the P12 and the provisioning profile with the stored bytes and the
passwords in its environment, prints two (the stored log shows the mask), and once the
build is over the private directory is gone.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.apple_kit import TEAM_ID, mobileprovision
from tests.e2e.conftest import DaemonFactory
from tests.e2e.test_runner_agent import Api, committed_repo, pipeline_file, runners

__all__ = ["runners"]

KEYSTORE = bytes(range(256)) * 4 + b"\x00end of keystore"
STORE_PASSWORD = "e2e-store-password-5c2a"
KEY_PASSWORD = "e2e-key-password-81fd"
P12 = b"0\x82\x05\x00 e2e pkcs12 " + bytes(range(200))
P12_PASSWORD = "e2e-p12-password-3e9b"
PROFILE = mobileprovision("6f1c9a3e-2b7d-4c55-9d1e-000000000e2e", "E2E AdHoc", 4_000_000_000)

SIGNING_FILE = pipeline_file(
    'test -f "$OORE_ANDROID_RELEASE_KEYSTORE_PATH"',
    'test "$(stat -c %a "$OORE_ANDROID_RELEASE_KEYSTORE_PATH")" = 600',
    'sha256sum < "$OORE_ANDROID_RELEASE_KEYSTORE_PATH"',
    'printf %s "$OORE_ANDROID_RELEASE_STORE_PASSWORD" | sha256sum',
    'printf %s "$OORE_ANDROID_RELEASE_KEY_PASSWORD" | sha256sum',
    'echo "alias: $OORE_ANDROID_RELEASE_KEY_ALIAS"',
    'echo "store password: $OORE_ANDROID_RELEASE_STORE_PASSWORD"',
    'test -z "${OORE_ANDROID_DEBUG_KEYSTORE_PATH:-}"',
    'test "$(stat -c %a "$OORE_IOS_P12_PATH")" = 600',
    'sha256sum < "$OORE_IOS_P12_PATH"',
    'sha256sum < "$OORE_IOS_PROFILE_1_PATH"',
    'echo "ios: $OORE_IOS_SIGNING_MODE $OORE_IOS_TEAM_ID $OORE_IOS_PROFILE_1_UUID"',
    'echo "p12 password: $OORE_IOS_P12_PASSWORD"',
)


def sha(data: bytes) -> str:
    return f"{hashlib.sha256(data).hexdigest()}  -"


def test_a_release_signed_build_on_a_real_runner(
    make_daemon: DaemonFactory,
    runners: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = committed_repo(tmp_path / "repo", {".oore.yaml": SIGNING_FILE})
    daemon = make_daemon().start()
    runner_tmp = tmp_path / "runner-tmp"
    runner_tmp.mkdir()
    with daemon.client() as client:
        api = Api.local_owner(client)
        project = api.project("app", repo)
        pipeline = api.pipeline(project["id"], name="ci")
        saved = api.call(
            "PUT",
            f"/v1/pipelines/{pipeline['id']}/android-signing",
            {
                "release": {
                    "enabled": True,
                    "keystore_base64": base64.b64encode(KEYSTORE).decode(),
                    "store_password": STORE_PASSWORD,
                    "key_alias": "upload",
                    "key_password": KEY_PASSWORD,
                }
            },
        )
        assert saved["release"]["enabled"] and saved["release"]["has_keystore"]
        ios = api.call(
            "PUT",
            f"/v1/pipelines/{pipeline['id']}/ios-signing",
            {
                "enabled": True,
                "team_id": TEAM_ID,
                "bundle_ids": ["com.example.e2e"],
                "p12": {
                    "p12_base64": base64.b64encode(P12).decode(),
                    "p12_password": P12_PASSWORD,
                },
                "provisioning_profiles": [
                    {
                        "bundle_id": "com.example.e2e",
                        "profile_filename": "e2e.mobileprovision",
                        "profile_base64": base64.b64encode(PROFILE).decode(),
                    }
                ],
            },
        )
        assert ios["enabled"] and ios["has_p12"]
        # The runner's temporary directories go where this test can look.
        monkeypatch.setenv("TMPDIR", str(runner_tmp))
        runners(daemon.url, api.token, "a", "any")
        build = api.trigger(project["id"], pipeline["id"])
        done = api.finished(build["id"])
        texts = [line["content"] for line in api.logs(build["id"])]
        assert done["build"]["status"] == "succeeded", (done, texts)
        # The process had the stored keystore and both passwords.
        assert sha(KEYSTORE) in texts
        assert sha(STORE_PASSWORD.encode()) in texts
        assert sha(KEY_PASSWORD.encode()) in texts
        assert "alias: upload" in texts
        assert "store password: ********" in texts
        assert sha(P12) in texts and sha(PROFILE) in texts
        assert f"ios: manual {TEAM_ID} 6f1c9a3e-2b7d-4c55-9d1e-000000000e2e" in texts
        assert "p12 password: ********" in texts
        everything = "\n".join(texts)
        assert STORE_PASSWORD not in everything and KEY_PASSWORD not in everything
        assert P12_PASSWORD not in everything
        said = re.search(r"keystores in (\S+)", everything)
        assert said is not None, texts
        private = Path(said.group(1))
        assert private.parent == runner_tmp
    assert not private.exists(), "the keystores are removed once the build is over"
    assert list(runner_tmp.glob("oore-signing-*")) == []
    terminal = (tmp_path / "runner-a.log").read_text()
    assert STORE_PASSWORD not in terminal and KEY_PASSWORD not in terminal
    assert P12_PASSWORD not in terminal
    assert STORE_PASSWORD not in daemon.text() and P12_PASSWORD not in daemon.text()
    assert daemon.stop() == 0
