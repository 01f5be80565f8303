"""Server-sent events as ``oore build logs --follow`` reads them."""

from __future__ import annotations

from oore.client.sse import Event, parse_events


def test_events_with_ids_multiline_data_and_comments() -> None:
    body = (
        ": keep-alive\n\n"
        'event: log\nid: 4\ndata: {"sequence":4}\n\n'
        'event: attempt\ndata: {"attempt":2}\n\n'
        "data: one\ndata: two\r\n\r\n"
        "event: done\ndata: build_finished\n\n"
    )
    assert list(parse_events(body.splitlines(keepends=True))) == [
        Event("log", '{"sequence":4}', "4"),
        Event("attempt", '{"attempt":2}', None),
        Event("message", "one\ntwo", None),
        Event("done", "build_finished", None),
    ]


def test_an_event_cut_off_by_a_closed_connection_is_dropped() -> None:
    assert list(parse_events(["event: log\n", "id: 9\n", 'data: {"seq'])) == []
