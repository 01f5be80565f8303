"""A real ``oored`` answers about 1,000 requests schemathesis generates from its own OpenAPI
document, with the owner's token and without credentials, as the document says: no server
error, every status, body and content type declared, no valid request refused as malformed,
no connection dropped. The long run is ``python -m bench fuzz``; both use bench/fuzzing.py.
Generation is derandomized and keeps no example database, so each run sends the same
requests."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import fuzzing
from tests.e2e.conftest import DaemonFactory

REQUESTS = 1000


@pytest.mark.timeout(300)  # about 40 s on two idle cores; far more on a busy machine
def test_generated_requests_get_the_answers_the_document_declares(
    make_daemon: DaemonFactory, tmp_path: Path
) -> None:
    daemon = make_daemon().start()
    seeded = fuzzing.seed(daemon.url, tmp_path)
    tally = fuzzing.run(seeded, requests_total=REQUESTS, seed_value=None)

    assert tally.requests >= REQUESTS * 0.8
    findings = "\n\n".join(
        f"[{f.check}] {f.operation} ({f.auth}) -> {f.status}\n{f.message}\n{f.curl}"
        for f in tally.findings.values()
    )
    assert tally.failed == 0, f"{dict(tally.failures)}\n\n{findings}"
    assert all(status < 500 for status in tally.statuses), tally.statuses
