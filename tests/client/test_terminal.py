"""Colours, tables and the progress bar of ``oore``'s commands for people."""

from __future__ import annotations

import io

from oore.client.terminal import Progress, human_size, strip_ansi, table


def test_colours_and_other_escapes_are_stripped_for_pipes() -> None:
    coloured = "\x1b[1;31merror\x1b[0m: \x1b]0;title\x07done \x1b[2K\x1b(Bok"
    assert strip_ansi(coloured) == "error: done ok"
    assert strip_ansi("plain [brackets] stay") == "plain [brackets] stay"


def test_tables_align_columns() -> None:
    text = table([("a", "queued", None), ("bbbb", "ok", "x")], ("ID", "STATUS", "MORE"))
    assert text.splitlines() == ["ID    STATUS  MORE", "a     queued", "bbbb  ok      x"]


def test_sizes_read_like_sizes() -> None:
    assert human_size(12) == "12 B"
    assert human_size(3 * 1024 * 1024 + 1) == "3.0 MiB"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_draws_only_on_a_terminal() -> None:
    piped = io.StringIO()
    bar = Progress(piped, "app.apk", 2048)
    bar.advance(1024)
    bar.finish()
    assert piped.getvalue() == ""
    tty = Tty()
    bar = Progress(tty, "app.apk", 2048)
    bar.advance(1024)
    bar.advance(1024)
    bar.finish()
    assert tty.getvalue().startswith("\rapp.apk [###############---------------]  50%")
    assert tty.getvalue().endswith("100% 2.0 KiB/2.0 KiB\n")
