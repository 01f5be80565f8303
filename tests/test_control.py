from __future__ import annotations

import json
from pathlib import Path

import trio

from oore.control import call_control, serve_control
from oore.runtime import open_runtime
from oore.store import Store
from tests.http.conftest import FakeClock


async def test_control_socket_mints_and_refuses_nonsense(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    await store.instance.ensure(clock.now())
    path = tmp_path / "oored.sock"
    async with open_runtime(store, clock) as runtime, trio.open_nursery() as nursery:
        await nursery.start(serve_control, path, runtime.identity)
        assert path.stat().st_mode & 0o777 == 0o600

        async def ask(request: dict[str, object]) -> dict[str, object]:
            return await trio.to_thread.run_sync(call_control, path, request)

        minted = await ask({"op": "mint_bootstrap_token", "ttl_seconds": 60})
        assert minted["ok"] is True and minted["expires_at"] == clock.now() + 60
        assert (await ask({"op": "mint_bootstrap_token", "ttl_seconds": 0}))["code"] == (
            "invalid_input"
        )
        assert (await ask({"op": "drop_tables"}))["code"] == "unknown_op"

        async with await trio.open_unix_socket(str(path)) as stream:
            await stream.send_all(b"[1, 2]\n")
            reply = json.loads(await stream.receive_some(4096))
        assert reply["code"] == "invalid_request"
        actions = [entry.action for entry in await store.audit.recent()]
        assert actions == ["bootstrap_token_minted"]
        nursery.cancel_scope.cancel()
    assert not path.exists()
