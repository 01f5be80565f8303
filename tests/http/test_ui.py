"""The web UI served at ``/``: index for client routes, hashed assets, its policy, no escape."""

from __future__ import annotations

from pathlib import Path

import pytest
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers

from oore.http.app import create_app
from oore.http.guard import DEFAULT_POLICY
from oore.http.ui import UI_POLICY, package_bundle
from oore.runtime import Runtime
from oore.store import Store
from tests.http.conftest import Api

INDEX = '<!doctype html><script type="module" src="/assets/app-1a2b.js"></script>'
SCRIPT = "console.log('oore')"


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    """A small built UI, and a secret next to it that must stay out of reach."""
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX)
    (root / "assets" / "app-1a2b.js").write_text(SCRIPT)
    (root / "assets" / "app-1a2b.css").write_text("body{margin:0}")
    (root / "assets" / ".hidden").write_text("hidden")
    (root / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("secret")
    return root


@pytest.fixture
def ui(store: Store, runtime: Runtime, dist: Path) -> Api:
    app: QuartTrio = create_app(runtime.app_services(store), ui_dist=dist)
    return Api(app)


def assert_ui_headers(headers: Headers) -> None:
    assert headers["Content-Security-Policy"] == UI_POLICY
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/", "/builds", "/builds/123", "/runners", "/a/b/c/d/e/f/g/h/i"])
async def test_index_answers_the_root_and_every_client_route(ui: Api, path: str) -> None:
    reply = await ui.get(path)
    assert reply.status == 200
    assert reply.body == INDEX
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    assert reply.headers["Cache-Control"] == "no-cache"
    assert_ui_headers(reply.headers)


async def test_assets_are_cached_for_good_with_their_type(ui: Api) -> None:
    script = await ui.get("/assets/app-1a2b.js")
    assert (script.status, script.body) == (200, SCRIPT)
    assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert script.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert_ui_headers(script.headers)
    style = await ui.get("/assets/app-1a2b.css")
    assert style.headers["Content-Type"] == "text/css; charset=utf-8"
    icon = await ui.get("/favicon.svg")
    assert (icon.status, icon.headers["Content-Type"]) == (200, "image/svg+xml")


async def test_head_and_conditional_requests(ui: Api) -> None:
    head = await ui.call("HEAD", "/builds/7")
    assert head.status == 200 and head.headers["Content-Length"] == str(len(INDEX))
    etag = (await ui.get("/")).headers["ETag"]
    again = await ui.get("/runners", headers={"If-None-Match": etag})
    assert (again.status, again.body) == (304, None)
    asset = await ui.get("/assets/app-1a2b.js")
    revalidated = await ui.get(
        "/assets/app-1a2b.js", headers={"If-None-Match": f'W/"x", {asset.headers["ETag"]}'}
    )
    assert revalidated.status == 304
    stale = await ui.get("/", headers={"If-None-Match": '"other"'})
    assert stale.status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/assets/../secret.txt",
        "/assets/%2e%2e/secret.txt",
        "/assets/..%2fsecret.txt",
        "/assets/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/assets/..\\secret.txt",
        "/assets/.hidden",
        "/assets//etc/passwd",
        "/assets/",
        "/assets/nope.js",
        "/assets/app-1a2b.js%00.css",
    ],
)
async def test_nothing_outside_the_assets_is_served(ui: Api, path: str) -> None:
    reply = await ui.get(path)
    assert (reply.status, reply.code) == (404, "not_found")


@pytest.mark.parametrize("path", ["/v1/nope", "/v1", "/install/x", "/healthz/x", "/metricsx/y"])
async def test_api_paths_keep_their_json_404_and_policy(ui: Api, path: str) -> None:
    reply = await ui.get(path)
    if path.startswith("/metricsx"):
        assert reply.body == INDEX  # a client route that merely starts alike
        return
    assert (reply.status, reply.code) == (404, "not_found")
    assert reply.headers["Content-Security-Policy"] == DEFAULT_POLICY


async def test_the_api_keeps_its_strict_policy(ui: Api) -> None:
    reply = await ui.get("/healthz")
    assert reply.status == 200 and reply.body["ok"] is True
    assert reply.headers["Content-Security-Policy"] == DEFAULT_POLICY


async def test_only_get_and_head_fall_back_to_the_index(ui: Api) -> None:
    for method in ("POST", "PUT", "DELETE"):
        reply = await ui.call(method, "/builds/1")
        assert (reply.status, reply.code) == (404, "not_found"), method


async def test_a_page_for_another_host_is_refused(ui: Api) -> None:
    reply = await ui.get("/", headers={"Host": "evil.example:8787"})
    assert (reply.status, reply.code) == (400, "invalid_host")


async def test_without_a_built_ui_the_root_says_so(
    store: Store, runtime: Runtime, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    api = Api(create_app(runtime.app_services(store), ui_dist=empty))
    for path in ("/", "/builds/1"):
        reply = await api.get(path)
        assert (reply.status, reply.code) == (503, "ui_not_built"), path
        assert "npm" in reply.body["error"]
    missing = await api.get("/assets/app.js")
    assert (missing.status, missing.code) == (404, "not_found")
    gone = Api(create_app(runtime.app_services(store), ui_dist=tmp_path / "absent"))
    assert (await gone.get("/")).code == "ui_not_built"


def test_the_package_bundle_is_the_one_pip_installs() -> None:
    import oore

    assert Path(str(package_bundle())) == Path(oore.__file__).parent / "web" / "dist"
    pyproject = (Path(oore.__file__).parent.parent / "pyproject.toml").read_text()
    assert '"web/dist/**"' in pyproject
