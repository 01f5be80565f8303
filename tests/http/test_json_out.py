"""The app's JSON answers through orjson: the text the previous provider gave, and that
provider for what orjson would encode differently."""

from __future__ import annotations

import datetime
import enum
import json
from typing import Any

import pytest
from quart import Quart
from quart.json.provider import DefaultJSONProvider

from oore.http.json_out import FastJSON


class Colour(enum.StrEnum):
    RED = "red"


def _providers(app: Quart) -> tuple[FastJSON, DefaultJSONProvider]:
    fallback = DefaultJSONProvider(app)
    return FastJSON(app, fallback), fallback


def _stdlib(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize(
    "value",
    [
        {"b": [1, 2.5, None, True, False], "a": {"z": "x", "y": -3}, "c": ""},
        [{"id": "1", "logs": [{"sequence": 0, "content": "line"}]}],
        {"colour": Colour.RED, "n": 2**63 - 1},
        'text with "quotes" and \\ and \n',
    ],
)
def test_the_text_is_the_stdlib_encoders(value: Any) -> None:
    app = Quart("t")
    fast, _ = _providers(app)
    assert fast.dumps(value) == _stdlib(value)
    assert fast.dumps(value, separators=(",", ":")) == _stdlib(value)


def test_what_orjson_encodes_differently_goes_to_the_previous_provider() -> None:
    app = Quart("t")
    fast, fallback = _providers(app)
    when = datetime.datetime(2026, 12, 4, 1, 2, 3, tzinfo=datetime.UTC)
    for value in ({"at": when}, {"n": 2**70}, {"d": datetime.date(2026, 12, 4)}):
        assert fast.dumps(value) == fallback.dumps(value)
    assert fast.dumps({"b": 1, "a": 2}, indent=2) == fallback.dumps({"b": 1, "a": 2}, indent=2)


async def _body(answer: Any) -> bytes:
    """A Quart answer's body (the provider's ``response`` is typed as Flask's)."""
    data: bytes = await answer.get_data()
    return data


async def test_an_answer_is_compact_json_and_a_newline() -> None:
    app = Quart("t")
    fast, fallback = _providers(app)
    async with app.app_context():
        answer = fast.response({"b": [1], "a": "é"})
        before = fallback.response({"b": [1], "a": "é"})
        assert answer.mimetype == before.mimetype == "application/json"
        body = await _body(answer)
        assert body.endswith(b"\n")
        assert json.loads(body) == json.loads(await _body(before)) == {"a": "é", "b": [1]}
        assert body == '{"a":"é","b":[1]}\n'.encode()
        when = datetime.datetime(2026, 12, 4, tzinfo=datetime.UTC)
        dated = await _body(fast.response({"at": when}))
        assert dated == await _body(fallback.response({"at": when}))
