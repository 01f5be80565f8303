"""The app factory's URL rules: URLs are still built right when builders compile late."""

from __future__ import annotations

from quart import url_for
from quart_trio import QuartTrio
from werkzeug.routing import Map, Rule

from oore.http.app import LazyBuilderRule


def test_a_lazy_rule_builds_the_urls_werkzeug_builds() -> None:
    rules = ["/v1/builds/<build_id>", "/v1/runners/<runner_id>/jobs/<build_id>/logs", "/x"]
    lazy = Map([LazyBuilderRule(r, endpoint=r) for r in rules]).bind("ci.example.com")
    plain = Map([Rule(r, endpoint=r) for r in rules]).bind("ci.example.com")
    values = {"build_id": "b 1", "runner_id": "r/2", "extra": "yes"}
    for rule in rules:
        for _ in range(2):  # the first call compiles, the second reuses
            assert lazy.build(rule, values) == plain.build(rule, values)
    assert lazy.match("/v1/builds/abc") == ("/v1/builds/<build_id>", {"build_id": "abc"})


async def test_the_app_builds_urls_from_its_routes(app: QuartTrio) -> None:
    assert app.url_rule_class is LazyBuilderRule
    async with app.test_request_context("/"):
        assert url_for("builds.get_build", build_id="abc") == "/v1/builds/abc"
