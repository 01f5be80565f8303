"""Build log lines: the 4096-byte cut, secret masking and the SSE wire form (contract §6).

Pure functions; the LogStream actor and the HTTP layer share them so that a batch is
encoded once and the same bytes go to every viewer.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

MAX_LINE_BYTES = 4096
MAX_STEP_NAME_BYTES = 256
MAX_STEP = 2**31 - 1  # what the database's integer holds
MASK = "********"
# Shorter values ("1", "yes") would blank out ordinary output without protecting anything.
MIN_SECRET_CHARS = 4
STREAMS = ("stdout", "stderr")


@dataclass(frozen=True, slots=True)
class LogLine:
    sequence: int
    content: str
    stream: str
    # When the server stored it (Unix seconds), for reads that ask; not part of identity.
    at: int | None = field(default=None, compare=False)
    # The step that printed it, when the runner said: its position among the steps the
    # runner reports (from 0) and its name. Lines outside any step (checkout, artifact
    # upload) and lines of runners that do not say have neither.
    step: int | None = field(default=None, compare=False)
    step_name: str | None = field(default=None, compare=False)

    def fields(self) -> dict[str, object]:
        """The line as reads and streams show it: the step only when known."""
        shown: dict[str, object] = {
            "sequence": self.sequence,
            "content": self.content,
            "stream": self.stream,
        }
        if self.step is not None:
            shown["step"] = self.step
        if self.step_name is not None:
            shown["step_name"] = self.step_name
        return shown


@dataclass(frozen=True)
class LogWrite:
    """Lines a runner sends for the attempt of the build it holds.

    The store keeps them only if the build is still bound to ``runner_id`` at ``attempt``
    when they commit: a lost attempt's late lines never mix into the next attempt's log.
    """

    runner_id: str
    attempt: int
    lines: tuple[LogLine, ...]


def truncate_utf8(text: str, limit: int = MAX_LINE_BYTES) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    encoded = text.encode("utf-8", errors="replace")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


def storable_line(content: str) -> str:
    """A printed line as the log keeps it: NUL shown as U+2400 (PostgreSQL text cannot hold
    NUL, and a build that prints one must not lose its log), cut to 4096 bytes."""
    return truncate_utf8(content.replace("\x00", "\N{SYMBOL FOR NULL}"))


def storable_step_name(name: str | None) -> str | None:
    """A step's name as the log keeps it: like a line (NUL made visible), cut to 256 bytes."""
    if name is None:
        return None
    return truncate_utf8(name.replace("\x00", "\N{SYMBOL FOR NULL}"), MAX_STEP_NAME_BYTES)


def truncation_notice(cap: int) -> str:
    return (
        f"[oore] log truncated: this attempt of the build reached its limit of {cap:,} lines; "
        "later output was not stored"
    )


def secret_values(snapshot: Mapping[str, Any]) -> tuple[str, ...]:
    """The values to mask in a build's logs: its pipeline's env values (shown to nobody
    without ManagePipelines, so never in a log either), longest first."""
    ui = snapshot.get("ui_execution_config")
    env = ui.get("env") if isinstance(ui, dict) else None
    if not isinstance(env, list):
        return ()
    values = {
        entry["value"]
        for entry in env
        if isinstance(entry, dict)
        and isinstance(entry.get("value"), str)
        and len(entry["value"].strip()) >= MIN_SECRET_CHARS
    }
    return tuple(sorted(values, key=len, reverse=True))


def mask_secrets(lines: Sequence[LogLine], secrets: Sequence[str]) -> list[LogLine]:
    """``lines`` with every occurrence of a secret replaced by :data:`MASK`.

    The lines of one batch are searched as one text, so a secret split across consecutive
    lines (or a multi-line secret printed line by line) is found too; each line keeps its
    own part of the mask.
    """
    if not secrets or not lines:
        return list(lines)
    text = "".join(line.content for line in lines)
    hidden = bytearray(len(text))
    for secret in secrets:
        for needle in dict.fromkeys((secret, secret.replace("\n", ""))):
            if not needle:
                continue
            start = text.find(needle)
            while start != -1:
                hidden[start : start + len(needle)] = b"\x01" * len(needle)
                start = text.find(needle, start + 1)
    if not any(hidden):
        return list(lines)
    masked: list[LogLine] = []
    offset = 0
    for line in lines:
        end = offset + len(line.content)
        masked.append(replace(line, content=_masked(line.content, hidden[offset:end])))
        offset = end
    return masked


def _masked(content: str, hidden: bytearray) -> str:
    if not any(hidden):
        return content
    parts: list[str] = []
    inside = False
    for char, flag in zip(content, hidden, strict=True):
        if flag:
            if not inside:
                parts.append(MASK)
                inside = True
        else:
            parts.append(char)
            inside = False
    return "".join(parts)


# -- server-sent events ---------------------------------------------------------------------
#
# The stream follows the build's current attempt. An event id is the line's sequence for
# the first attempt (as it always was) and ``<attempt>:<sequence>`` for a later one, so a
# ``Last-Event-ID`` says which attempt the client was reading, not only how far.


@dataclass(frozen=True)
class ResumePoint:
    """Where a client resumes: after ``sequence`` of ``attempt``."""

    attempt: int
    sequence: int


def event_id(attempt: int, sequence: int) -> str:
    return str(sequence) if attempt == 1 else f"{attempt}:{sequence}"


def resume_point(last_event_id: str | None) -> ResumePoint | None:
    """``Last-Event-ID`` read back; None (start from the beginning) when absent or unreadable."""
    if last_event_id is None:
        return None
    attempt_text, colon, sequence_text = last_event_id.strip().rpartition(":")
    try:
        attempt = int(attempt_text) if colon else 1
        sequence = int(sequence_text)
    except ValueError:
        return None
    if attempt < 1:
        return None
    return ResumePoint(attempt, sequence)


def log_event(line: LogLine, attempt: int = 1) -> bytes:
    """One ``event: log`` whose ``id`` is its resume point (see :func:`event_id`)."""
    try:
        data = orjson.dumps(line.fields())
    except TypeError:  # a lone surrogate: escaped, as only the standard encoder can
        data = json.dumps(line.fields(), separators=(",", ":")).encode()
    return b"event: log\nid: %s\ndata: %s\n\n" % (event_id(attempt, line.sequence).encode(), data)


def log_events(lines: Iterable[LogLine], attempt: int = 1) -> bytes:
    return b"".join(log_event(line, attempt) for line in lines)


def attempt_event(attempt: int) -> bytes:
    """``event: attempt``: the lines that follow are this attempt's, numbered afresh.

    Sent when a stream starts on an attempt after the first, and when the build is
    requeued while a viewer watches; it carries no id, so a client that reconnects before
    the next line is shown the event again.
    """
    return f'event: attempt\ndata: {{"attempt":{attempt}}}\n\n'.encode()


def done_event(reason: str) -> bytes:
    """``event: done`` with a plain-text reason, after which the server closes the stream."""
    return f"event: done\ndata: {reason}\n\n".encode()


KEEP_ALIVE = b": keep-alive\n\n"


def window_bounds(
    sequences: Sequence[int], after: int, before: int | None, limit: int | None
) -> tuple[int, int]:
    """Where the page of a log read lies among an attempt's lines (their ``sequences``, in
    order), as the store reads the same window: the first ``limit`` after ``after``; with
    ``before``, the last ``limit`` between the two. ``limit`` None: no limit."""
    start = bisect_right(sequences, after)
    if before is None:
        return start, len(sequences) if limit is None else min(len(sequences), start + limit)
    end = max(start, bisect_left(sequences, before))
    if limit is not None:
        start = max(start, end - limit)
    return start, end


def page_of(
    lines: Sequence[LogLine], after: int, before: int | None, limit: int | None
) -> list[LogLine]:
    """The page of an attempt's ``lines`` (all of them, in order) for a window
    (:func:`window_bounds`)."""
    start, end = window_bounds([line.sequence for line in lines], after, before, limit)
    return list(lines[start:end])
