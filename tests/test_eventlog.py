"""The daemon's log lines: one per record, fields that split cleanly, JSON on request."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shlex
from collections.abc import Iterator

import pytest

from oore.eventlog import REQUEST_ID, EventFormatter, LogFormat, event

# time LEVEL name key=value ...
_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (INFO|WARNING|ERROR) (\S+)( .*)?")


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, dict[LogFormat, Captured]]]:
    """A logger writing to one text and one JSON stream."""
    log = logging.getLogger("tests.eventlog")
    log.setLevel(logging.INFO)
    log.propagate = False
    captured: dict[LogFormat, Captured] = {}
    handlers = []
    for log_format in ("text", "json"):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(EventFormatter(log_format))
        log.addHandler(handler)
        handlers.append(handler)
        captured[log_format] = Captured(stream)
    yield log, captured
    for handler in handlers:
        log.removeHandler(handler)


def text_fields(line: str) -> tuple[str, str, dict[str, str]]:
    """Level, name and the fields of a text line, split the way a shell would."""
    match = _LINE.fullmatch(line)
    assert match is not None, line
    fields = {}
    for part in shlex.split(match[3] or ""):
        key, _, value = part.partition("=")
        fields[key] = value
    return match[1], match[2], fields


HOSTILE = [
    "two words",
    'a "quoted" word',
    "key=value",
    "back\\slash",
    "line\nbreak",
    "para\u2028graph",
    "tab\there",
    "",
    "ünïcödé",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_any_value_keeps_one_line_that_splits_back(
    logger: tuple[logging.Logger, dict[LogFormat, Captured]], value: str
) -> None:
    log, captured = logger
    event(log, "build.finished", project=value, number=12, duration_s=41.2, gone=None)
    (line,) = captured["text"].lines()
    level, name, fields = text_fields(line)
    assert (level, name) == ("INFO", "build.finished")
    assert fields["number"] == "12" and fields["duration_s"] == "41.2"
    assert "gone" not in fields
    # The quoted form is a JSON string: decoding it gives the value back exactly.
    shown = line.split(" project=", 1)[1].rsplit(" number=", 1)[0]
    assert (json.loads(shown) if shown.startswith('"') else shown) == value
    (as_json,) = captured["json"].lines()
    assert json.loads(as_json)["project"] == value


def test_plain_records_and_exceptions_are_one_line_too(
    logger: tuple[logging.Logger, dict[LogFormat, Captured]],
) -> None:
    log, captured = logger
    log.warning("database unavailable (%s)", "refused")
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        event(log, "http.error", level=logging.ERROR, status=500, exc_info=exc)
    first, second = captured["text"].lines()
    assert text_fields(first) == (
        "WARNING",
        "tests.eventlog",
        {"msg": "database unavailable (refused)"},
    )
    level, name, fields = text_fields(second)
    assert (level, name, fields["status"]) == ("ERROR", "http.error", "500")
    assert (
        fields["exception"].startswith("Traceback") and "RuntimeError: boom" in fields["exception"]
    )
    plain, failed = (json.loads(line) for line in captured["json"].lines())
    assert plain["logger"] == "tests.eventlog" and plain["msg"] == "database unavailable (refused)"
    assert failed["event"] == "http.error" and failed["status"] == 500
    assert "RuntimeError: boom" in failed["exception"]


def test_lines_written_inside_a_request_carry_its_id(
    logger: tuple[logging.Logger, dict[LogFormat, Captured]],
) -> None:
    log, captured = logger
    token = REQUEST_ID.set("req-1")
    try:
        event(log, "auth.signed_in", method="local")
    finally:
        REQUEST_ID.reset(token)
    event(log, "runner.lost", runner_id="r1")
    inside, outside = captured["text"].lines()
    assert text_fields(inside)[2] == {"method": "local", "request_id": "req-1"}
    assert text_fields(outside)[2] == {"runner_id": "r1"}
    assert json.loads(captured["json"].lines()[0])["request_id"] == "req-1"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_lines_of_several_processes_name_the_one_that_wrote_them(log_format: LogFormat) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EventFormatter(log_format, pid=True))
    log = logging.getLogger("tests.eventlog.pid")
    log.propagate = False
    log.addHandler(handler)
    try:
        event(log, "worker.started", worker=1)
        log.warning("plain")
    finally:
        log.removeHandler(handler)
    started, plain = stream.getvalue().splitlines()
    if log_format == "text":
        assert text_fields(started) == (
            "INFO",
            "worker.started",
            {"pid": str(os.getpid()), "worker": "1"},
        )
        assert text_fields(plain)[2] == {"pid": str(os.getpid()), "msg": "plain"}
    else:
        assert list(json.loads(started)) == ["time", "level", "pid", "event", "worker"]
        assert json.loads(plain)["pid"] == os.getpid()
