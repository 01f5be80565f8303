"""The daemon's own log: one line per event, as ``key=value`` fields or as one JSON object.

``event(log, "build.finished", build_id=..., status="succeeded")`` writes::

    2026-12-03T06:50:01Z INFO build.finished build_id=... status=succeeded

A value holding a space, a quote, an ``=`` or anything unprintable is written as a JSON
string (``msg="a \\"quoted\\" word"``), so every record stays on one line that splits
cleanly; ``None`` values are left out. Records that are not events (library messages,
warnings) get the same shape with the logger's name and a ``msg`` field. Inside an HTTP
request every line carries the request's ``request_id``.

Callers never pass credentials: events name things by id, never by token or secret.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Literal, TextIO, get_args

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)

# The id of the HTTP request being served (set by oore.http.requests); a ContextVar so
# each request's tasks see their own and nothing is shared between requests.
REQUEST_ID: ContextVar[str | None] = ContextVar("oore_request_id", default=None)

_EVENT = "oore_event"
_FIELDS = "oore_fields"
_UNSAFE = frozenset(' "=\\')
QUIET_LIBRARIES = ("httpx", "httpcore")


def event(
    logger: logging.Logger,
    name: str,
    /,
    *parts: Mapping[str, object],
    level: int = logging.INFO,
    exc_info: BaseException | None = None,
    **fields: object,
) -> None:
    """Log the event ``name`` (dotted, like ``runner.lost``) with the fields of ``parts``
    then ``fields``; an ``exc_info`` exception adds its traceback as ``exception``."""
    if logger.isEnabledFor(level):
        merged = {key: value for part in parts for key, value in part.items()} | fields
        merged.setdefault("request_id", REQUEST_ID.get())
        extra = {_EVENT: name, _FIELDS: merged}
        # Made here rather than by ``logger.log``: no line names its source file, so the
        # walk up the stack that finds it would be wasted on every event.
        error = None if exc_info is None else (type(exc_info), exc_info, exc_info.__traceback__)
        logger.handle(
            logger.makeRecord(logger.name, level, "", 0, "%s", (name,), error, None, extra)
        )


def event_of(record: logging.LogRecord) -> tuple[str, dict[str, object]] | None:
    """The name and fields of a record written by :func:`event`; None for other records."""
    name = getattr(record, _EVENT, None)
    fields = getattr(record, _FIELDS, None)
    if not isinstance(name, str) or not isinstance(fields, dict):
        return None
    return name, fields


def record_fields(record: logging.LogRecord) -> dict[str, object]:
    """The ordered fields of one line: time, level, the event (or logger and msg), the rest."""
    fields: dict[str, object] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
        "level": record.levelname,
    }
    found = event_of(record)
    if found is not None:
        fields["event"] = found[0]
        fields.update((key, value) for key, value in found[1].items() if value is not None)
    else:
        fields["logger"] = record.name
        fields["msg"] = record.getMessage()
    request_id = REQUEST_ID.get()
    if request_id is not None:
        fields.setdefault("request_id", request_id)
    if record.exc_info:
        fields["exception"] = logging.Formatter().formatException(record.exc_info)
    if record.stack_info:
        fields["stack"] = record.stack_info
    return fields


def text_value(value: object) -> str:
    """One value as it appears after ``key=``: bare when safe, else a JSON string."""
    if type(value) is str:  # the common case first: every id and name
        text = value
    elif isinstance(value, bool):
        return "true" if value else "false"
    elif type(value) is int or type(value) is float:
        return repr(value)
    elif isinstance(value, list | tuple | set | frozenset):
        text = ",".join(str(item) for item in value)
    else:
        text = str(value)
    if text and text.isprintable() and _UNSAFE.isdisjoint(text):
        return text
    quoted = json.dumps(text, ensure_ascii=False)
    # Line and paragraph separators and other unprintables (which some readers split
    # lines on) are written as \u escapes.
    return quoted if quoted.isprintable() else json.dumps(text)


def _json_value(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_value(item) for item in value]
    return str(value)


class EventFormatter(logging.Formatter):
    """Formats every record as one line of ``key=value`` text or one JSON object; with
    ``pid``, each line names the process that wrote it (``oored --workers N``)."""

    def __init__(self, log_format: LogFormat = "text", *, pid: bool = False) -> None:
        super().__init__()
        self.log_format = log_format
        self._pid = os.getpid() if pid else None

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        if self._pid is not None:
            stamp = {"time": fields.pop("time"), "level": fields.pop("level")}
            fields = {**stamp, "pid": self._pid, **fields}
        if self.log_format == "json":
            values = {key: _json_value(value) for key, value in fields.items()}
            line = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
            return line if line.isprintable() else json.dumps(values, separators=(",", ":"))
        head = f"{fields.pop('time')} {fields.pop('level')} "
        head += str(fields.pop("event", None) or fields.pop("logger"))
        return " ".join([head, *(f"{key}={text_value(value)}" for key, value in fields.items())])


def configure_logging(
    log_format: LogFormat, stream: TextIO | None = None, *, pid: bool = False
) -> None:
    """Send every record at INFO and above to ``stream`` (stderr) in ``log_format``; with
    ``pid``, every line names this process (several processes share one output)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(EventFormatter(log_format, pid=pid))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    # The HTTP client logs every outgoing request's URL, query string included.
    for chatty in QUIET_LIBRARIES:
        logging.getLogger(chatty).setLevel(logging.WARNING)


def divert(logger_name: str, path: Path) -> None:
    """Send ``logger_name``'s records to the file ``path`` only, as plain text with its
    line breaks kept, for the rest of the process (once per file)."""
    chatty = logging.getLogger(logger_name)
    chatty.propagate = False
    target = str(path.absolute())
    if any(getattr(h, "baseFilename", None) == target for h in chatty.handlers):
        return
    handler = logging.FileHandler(target, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    chatty.addHandler(handler)
