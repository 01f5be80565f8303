"""Android release signing reaches a real build run by a real ``oore runner``.

The pipeline's release profile is stored through the API; the build finds the keystore
file with the stored bytes and the passwords in its environment, prints one (the stored
log shows the mask), and once the build is over the private directory is gone.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import DaemonFactory
from tests.e2e.test_runner_agent import Api, committed_repo, pipeline_file, runners

__all__ = ["runners"]

KEYSTORE = bytes(range(256)) * 4 + b"\x00end of keystore"
STORE_PASSWORD = "e2e-store-password-5c2a"
KEY_PASSWORD = "e2e-key-password-81fd"

SIGNING_FILE = pipeline_file(
    'test -f "$OORE_ANDROID_RELEASE_KEYSTORE_PATH"',
    'test "$(stat -c %a "$OORE_ANDROID_RELEASE_KEYSTORE_PATH")" = 600',
    'sha256sum < "$OORE_ANDROID_RELEASE_KEYSTORE_PATH"',
    'printf %s "$OORE_ANDROID_RELEASE_STORE_PASSWORD" | sha256sum',
    'printf %s "$OORE_ANDROID_RELEASE_KEY_PASSWORD" | sha256sum',
    'echo "alias: $OORE_ANDROID_RELEASE_KEY_ALIAS"',
    'echo "store password: $OORE_ANDROID_RELEASE_STORE_PASSWORD"',
    'test -z "${OORE_ANDROID_DEBUG_KEYSTORE_PATH:-}"',
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
        everything = "\n".join(texts)
        assert STORE_PASSWORD not in everything and KEY_PASSWORD not in everything
        said = re.search(r"keystores in (\S+)", everything)
        assert said is not None, texts
        private = Path(said.group(1))
        assert private.parent == runner_tmp
    assert not private.exists(), "the keystores are removed once the build is over"
    assert list(runner_tmp.glob("oore-signing-*")) == []
    terminal = (tmp_path / "runner-a.log").read_text()
    assert STORE_PASSWORD not in terminal and KEY_PASSWORD not in terminal
    assert STORE_PASSWORD not in daemon.text()
    assert daemon.stop() == 0
