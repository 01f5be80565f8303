from __future__ import annotations

import json

from oore.domain.logs import (
    MASK,
    LogLine,
    ResumePoint,
    attempt_event,
    done_event,
    log_events,
    mask_secrets,
    resume_point,
    secret_values,
    truncate_utf8,
)


def lines(*contents: str) -> list[LogLine]:
    return [LogLine(i, text, "stdout") for i, text in enumerate(contents)]


def texts(masked: list[LogLine]) -> list[str]:
    return [line.content for line in masked]


def test_a_secret_is_masked_wherever_it_appears() -> None:
    masked = mask_secrets(lines("token=hunter22 and hunter22", "clean"), ["hunter22"])
    assert texts(masked) == [f"token={MASK} and {MASK}", "clean"]


def test_a_secret_split_across_two_lines_of_a_batch_is_masked_in_both() -> None:
    masked = mask_secrets(lines("prefix hunt", "er22 suffix", "hunter"), ["hunter22"])
    assert texts(masked) == [f"prefix {MASK}", f"{MASK} suffix", "hunter"]


def test_a_multi_line_secret_printed_line_by_line_is_masked() -> None:
    key = "-----BEGIN KEY-----\nabcdefgh\n-----END KEY-----"
    masked = mask_secrets(lines(*key.split("\n"), "after"), [key])
    assert texts(masked) == [MASK, MASK, MASK, "after"]


def test_sequences_and_streams_are_kept() -> None:
    given = [LogLine(7, "a secret1 b", "stderr")]
    assert mask_secrets(given, ["secret1"]) == [LogLine(7, f"a {MASK} b", "stderr")]


def test_short_env_values_are_not_treated_as_secrets() -> None:
    snapshot = {
        "ui_execution_config": {
            "env": [
                {"key": "DEBUG", "value": "1"},
                {"key": "TOKEN", "value": "s3cr3t-value"},
                {"key": "LONGER", "value": "s3cr3t-value-2"},
            ]
        }
    }
    assert secret_values(snapshot) == ("s3cr3t-value-2", "s3cr3t-value")
    assert secret_values({}) == ()


def test_lines_are_cut_to_4096_bytes_on_a_character_boundary() -> None:
    text = "é" * 3000  # 6000 bytes
    cut = truncate_utf8(text)
    assert len(cut.encode()) == 4096 and cut == "é" * 2048
    assert truncate_utf8("short") == "short"
    assert len(truncate_utf8("a" + "€" * 2000).encode()) <= 4096


def test_events_carry_the_sequence_as_id_and_json_data() -> None:
    wire = log_events([LogLine(3, 'say "hi"\n', "stderr")]).decode()
    assert wire.startswith("event: log\nid: 3\ndata: ")
    data = wire.split("data: ", 1)[1].rstrip("\n")
    assert json.loads(data) == {"sequence": 3, "content": 'say "hi"\n', "stream": "stderr"}
    assert done_event("build_finished") == b"event: done\ndata: build_finished\n\n"


def test_ids_after_the_first_attempt_name_it_and_resume_within_it() -> None:
    assert log_events([LogLine(7, "x", "stdout")], 1).startswith(b"event: log\nid: 7\n")
    assert log_events([LogLine(7, "x", "stdout")], 3).startswith(b"event: log\nid: 3:7\n")
    assert attempt_event(2) == b'event: attempt\ndata: {"attempt":2}\n\n'
    assert resume_point("17") == ResumePoint(1, 17)
    assert resume_point(" 3:9 ") == ResumePoint(3, 9)
    assert resume_point("2:-1") == ResumePoint(2, -1)
    for unreadable in (None, "", "x", "2:", ":4", "0:4", "a:4", "1:2:3"):
        assert resume_point(unreadable) is None, unreadable
