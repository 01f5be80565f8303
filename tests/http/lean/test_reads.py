"""The hot reads on the lean listener answer as Quart's routes do.

The same app is served twice on loopback: as the daemon serves it (the lean listener in
front of Hypercorn) and with Quart alone. Every request below goes to both, on one
kept-alive connection each, and the answers must be the same: status, body byte for byte,
and every header but ``Date``, ``Server`` and ``Connection``. This is what keeps the two
paths from drifting apart.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
import trio.testing
from quart_trio import QuartTrio

from oore.domain.users import Role, Session
from oore.http.context import AppServices
from oore.http.lean.lanes import RUNNERS_SLOT, Lanes
from oore.http.lean.reads import API_WORKER_READS_AT_ONCE, READS_AT_ONCE, Read, ReadRoute
from oore.http.lean.routes import LeanRoutes, dispatch
from oore.http.lean.runner_channel import lean_routes
from oore.http.metrics import app_metrics
from oore.http.query import QueryArgs
from tests.http.builds_kit import Setup, repo, setup
from tests.http.channel_kit import services_of
from tests.http.conftest import UserFactory
from tests.http.sse_kit import serving

__all__ = ["repo", "setup"]

ALLOWED_ORIGIN = "https://ci.example.com"  # in the test runtime's allowed origins
MISSING = "00000000-0000-4000-8000-000000000000"
UNCOMPARED = {"date", "server", "connection"}
WITHIN = 10


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]  # lower-cased names, in order
    body: bytes

    def compared(self) -> tuple[int, list[tuple[str, str]], bytes]:
        kept = sorted((name, value) for name, value in self.headers if name not in UNCOMPARED)
        return self.status, kept, self.body

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)


class Connection:
    """One kept-alive HTTP/1.1 connection on a bare socket."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.pending = b""

    async def _more(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.pending += chunk

    async def get(self, target: str, headers: dict[str, str]) -> Answer:
        lines = [f"GET {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
        # latin-1: a header value may carry any byte, as on the wire
        await self.stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        with trio.fail_after(WITHIN):
            while b"\r\n\r\n" not in self.pending:
                await self._more()
            head, _, self.pending = self.pending.partition(b"\r\n\r\n")
            first, *rest = head.decode("latin-1").split("\r\n")
            parsed = [line.split(":", 1) for line in rest]
            fields = [(name.strip().lower(), value.strip()) for name, value in parsed]
            length = int(next(value for name, value in fields if name == "content-length"))
            while len(self.pending) < length:
                await self._more()
            body, self.pending = self.pending[:length], self.pending[length:]
        return Answer(int(first.split(" ")[1]), fields, body)


async def _connect(url: str) -> Connection:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return Connection(await trio.open_tcp_stream(parts.hostname, parts.port))


@dataclass
class Both:
    """A connection to the daemon as it serves (lean) and one to Quart alone."""

    lean: Connection
    quart: Connection
    host: str

    async def same(self, target: str, headers: dict[str, str] | None = None) -> Answer:
        """Send ``target`` to both; assert the answers are alike; the lean one."""
        sent = {"Host": self.host, "X-Request-Id": "compare-1", **(headers or {})}
        lean = await self.lean.get(target, sent)
        quart = await self.quart.get(target, sent)
        assert lean.compared() == quart.compared(), target
        return lean


@pytest.fixture
async def both(app: QuartTrio) -> AsyncIterator[Both]:
    async with serving(app) as lean_url, serving(app, lean=False) as quart_url:
        lean, quart = await _connect(lean_url), await _connect(quart_url)
        async with lean.stream, quart.stream:
            yield Both(lean, quart, "localhost")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


PROJECT_QUERIES = [
    "",
    "?limit=1",
    "?limit=0",
    "?limit=-1",
    "?limit=1000",
    "?limit=9223372036854775807",
    "?limit=9223372036854775808",
    "?limit=abc",
    "?limit=",
    "?limit=1&limit=abc",
    "?offset=-5",
    "?offset=1",
    "?offset=100000",
    "?sort=name&direction=asc",
    "?sort=updated_at&direction=desc",
    "?sort=bogus",
    "?direction=sideways",
    "?search=app",
    "?search=%20%20",
    "?search=%00",
    "?search=%ff",
    "?integration_id=nope",
    "?unknown=1",
]

BUILD_QUERIES = [
    "",
    "?limit=1",
    "?limit=0",
    "?limit=-1",
    "?limit=201",
    "?limit=x",
    "?offset=-1",
    "?offset=1",
    "?offset=99999999999999999999999",
    "?status=queued",
    "?status=queued,running,succeeded",
    "?status=bogus",
    "?status=" + ",".join(["queued"] * 10),
    "?branch=main",
    "?branch=%01",
    "?sort=bogus",
    "?sort=created_at&direction=asc",
    "?project_id=" + MISSING,
    "?pipeline_id=not-an-id",
]


async def test_project_lists_answer_alike(both: Both, setup: Setup) -> None:
    for query in PROJECT_QUERIES:
        await both.same("/v1/projects" + query, bearer(setup.token))
    answer = await both.same("/v1/projects", bearer(setup.token))
    assert answer.status == 200 and b'"total":1' in answer.body


async def test_build_lists_and_details_answer_alike(both: Both, setup: Setup) -> None:
    build = await setup.trigger()
    await setup.trigger(branch="main")
    for query in BUILD_QUERIES:
        await both.same("/v1/builds" + query, bearer(setup.token))
    await both.same(f"/v1/builds?project_id={setup.project_id}&limit=1", bearer(setup.token))
    await both.same(f"/v1/builds?pipeline_id={setup.pipeline_id}", bearer(setup.token))
    answer = await both.same(f"/v1/builds/{build['id']}", bearer(setup.token))
    assert answer.status == 200
    for missing in (MISSING, "not-a-uuid", "%20", "a%2Fb"):
        await both.same(f"/v1/builds/{missing}", bearer(setup.token))


LOG_QUERIES = [
    "",
    "?timestamps=true",
    "?timestamps=yes",
    "?after_sequence=0",
    "?after_sequence=-5",
    "?after_sequence=x",
    "?before_sequence=2",
    "?before_sequence=-1",
    "?before_sequence=2&after_sequence=0&limit=1",
    "?limit=1",
    "?limit=0",
    "?limit=-1",
    "?limit=9999",
    "?attempt=1",
    "?attempt=2",
    "?attempt=0",
]

RUNNER_QUERIES = [
    "",
    "?q=r",
    "?q=%00",
    "?sort=name",
    "?sort=bogus&direction=asc",
    "?direction=x",
    "?limit=0",
    "?limit=1000",
    "?limit=-3",
    "?offset=-1",
    "?offset=1",
    "?limit=1.5",
]


async def test_log_pages_and_runner_lists_answer_alike(both: Both, setup: Setup) -> None:
    build = await setup.trigger()
    runner = await setup.runner()
    assert await runner.claim() is not None
    assert (await runner.report(build["id"], "running")).status == 200
    lines = [{"sequence": n, "content": f"line {n}", "stream": "stdout"} for n in range(3)]
    assert (await runner.logs(build["id"], lines)).body == {"appended": 3}
    for query in LOG_QUERIES:
        await both.same(f"/v1/builds/{build['id']}/logs{query}", bearer(setup.token))
    answer = await both.same(f"/v1/builds/{build['id']}/logs", bearer(setup.token))
    assert answer.status == 200 and b'"total":3' in answer.body
    await both.same(f"/v1/builds/{MISSING}/logs", bearer(setup.token))
    for query in RUNNER_QUERIES:
        await both.same("/v1/runners" + query, bearer(setup.token))
    answer = await both.same("/v1/runners", bearer(setup.token))
    assert answer.status == 200 and b'"total":1' in answer.body


async def test_credentials_are_checked_alike(
    both: Both,
    setup: Setup,
    refused_sessions: list[tuple[str | None, str]],
    make_user: UserFactory,
) -> None:
    build = await setup.trigger()
    targets = (
        "/v1/projects",
        "/v1/builds",
        f"/v1/builds/{build['id']}",
        f"/v1/builds/{build['id']}/logs",
        "/v1/runners",
    )
    for target in targets:
        for token, code in refused_sessions:
            answer = await both.same(target, {} if token is None else bearer(token))
            assert answer.status == 401 and code.encode() in answer.body
        await both.same(target, {"Authorization": "Basic abc"})
        await both.same(target, {"Cookie": f"oore_session={setup.token}"})
        await both.same(target, {"Cookie": "oore_session=" + "ab" * 32})
        # bytes outside UTF-8: a token that checks out as nothing (was a 500 on the lean path)
        answer = await both.same(target, {"Cookie": "oore_session=\xff\xfe"})
        assert answer.status == 401
        await both.same(target, {"Cookie": f"theme=dark; oore_session={setup.token}; x=\xff"})
        # Someone who is not a member of the project sees none of it.
        outsider = await make_user(Role.DEVELOPER)
        await both.same(target, bearer(outsider.token))


async def test_host_origin_and_request_ids_are_handled_alike(both: Both, setup: Setup) -> None:
    for target in ("/v1/projects", "/v1/builds"):
        answer = await both.same(target, {**bearer(setup.token), "Origin": ALLOWED_ORIGIN})
        assert answer.header("access-control-allow-origin") == ALLOWED_ORIGIN
        await both.same(target, {**bearer(setup.token), "Origin": "https://evil.example"})
        answer = await both.same(target, {**bearer(setup.token), "Host": "evil.example.com"})
        assert answer.status == 400 and b"invalid_host" in answer.body
        await both.same(target, {**bearer(setup.token), "Host": "127.0.0.1:1"})
    sent = {"Host": both.host, **bearer(setup.token)}
    lean = await both.lean.get("/v1/projects", sent)
    assert lean.header("x-request-id") and lean.header("x-request-id") != "compare-1"


@pytest.fixture
def guess_limit(request: pytest.FixtureRequest) -> int:
    """A lockout after four failures where it is the subject, none elsewhere (these
    tests send wrong credentials on purpose, twice each)."""
    return 4 if "locked" in request.node.name else 0


async def test_a_locked_client_is_refused_alike(both: Both, make_user: UserFactory) -> None:
    fresh = await make_user(Role.DEVELOPER)  # never seen to check out: not vouched for
    wrong = bearer("cd" * 32)
    for _ in range(2):  # four failures, two of them counted by the lean side: locked
        answer = await both.same("/v1/projects", wrong)
        assert answer.status == 401
    for target in ("/v1/projects", "/v1/builds", f"/v1/builds/{MISSING}"):
        answer = await both.same(target, bearer(fresh.token))
        assert answer.status == 429 and answer.header("retry-after") is not None


async def test_a_connection_goes_on_to_hypercorn_at_its_first_other_request(
    both: Both, setup: Setup, app: QuartTrio
) -> None:
    sent = {"Host": both.host, **bearer(setup.token)}
    before = app_metrics(app).requests.labels("GET", "/v1/projects", "200")._value.get()
    first = await both.lean.get("/v1/projects", sent)
    again = await both.lean.get("/v1/projects?limit=1", sent)
    other = await both.lean.get("/v1/api-tokens", sent)
    later = await both.lean.get("/v1/projects", sent)
    assert [first.status, again.status, other.status, later.status] == [200, 200, 200, 200]
    after = app_metrics(app).requests.labels("GET", "/v1/projects", "200")._value.get()
    assert after - before == 3


async def test_connection_close_is_honoured(both: Both, setup: Setup) -> None:
    sent = {"Host": both.host, "Connection": "close", **bearer(setup.token)}
    answer = await both.lean.get("/v1/projects", sent)
    assert answer.status == 200 and answer.header("connection") == "close"
    with trio.fail_after(WITHIN):
        assert await both.lean.stream.receive_some(10) == b""


def _kept_for_ever(_: dict[str, Any], __: QueryArgs) -> tuple[frozenset[str], float | None]:
    return frozenset(), None


async def test_reads_beyond_the_bound_wait_their_turn(app: QuartTrio, owner_token: str) -> None:
    """Four reads at once on a route that answers two at a time: two are answered while
    the other two wait, having had no work done for them; then all four are answered."""
    inside = most = 0
    release = trio.Event()

    async def held(
        _: AppServices, session: Session, args: QueryArgs, path: Sequence[str]
    ) -> dict[str, Any]:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await release.wait()
        inside -= 1
        return {"user": session.user.email}

    route = ReadRoute(
        services_of(app),
        reads=(Read(re.compile(r"/v1/held"), "/v1/held", "held", {}, held, _kept_for_ever),),
        at_once=2,
    )

    async def nowhere(stream: trio.SocketStream, received: bytes, head_by: float) -> None:
        await stream.aclose()

    def handler(stream: trio.SocketStream) -> Any:
        return dispatch(stream, LeanRoutes([route]), nowhere, idle_seconds=WITHIN)

    answers: list[Answer] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        connections = [Connection(await trio.open_tcp_stream("127.0.0.1", port)) for _ in range(4)]

        async def ask(connection: Connection, n: int) -> None:
            headers = {"Host": "localhost", **bearer(owner_token)}
            # four answers of their own: readers of one answer share one read
            answers.append(await connection.get(f"/v1/held?n={n}", headers))

        async with trio.open_nursery() as asking:
            for n, connection in enumerate(connections):
                asking.start_soon(ask, connection, n)
            with trio.fail_after(WITHIN):
                while route.in_flight.statistics().tasks_waiting < 2:
                    await trio.testing.wait_all_tasks_blocked(0.01)
            assert inside == 2 and route.in_flight.borrowed_tokens == 2
            release.set()
        assert most == 2 and [answer.status for answer in answers] == [200] * 4
        for connection in connections:
            await connection.stream.aclose()
        nursery.cancel_scope.cancel()


async def test_a_worker_serving_only_the_api_reads_more_at_once(app: QuartTrio) -> None:
    """The bound is 2 in a process that serves the runners too, and higher in an API
    worker of ``oored --workers N``, whose runners are in another process."""

    def bound(lanes: Lanes | None) -> float:
        [reads] = [
            r for r in lean_routes(services_of(app), lanes=lanes).routes if isinstance(r, ReadRoute)
        ]
        return reads.in_flight.total_tokens

    name = f"oore-test-{secrets.token_hex(4)}"
    assert bound(None) == bound(Lanes(name, RUNNERS_SLOT, 2)) == READS_AT_ONCE == 2
    assert bound(Lanes(name, 1, 2)) == API_WORKER_READS_AT_ONCE > READS_AT_ONCE


async def _all_alike(both: Both, token: str, build_id: str, setup: Setup) -> None:
    """The five hot reads answer on the lean side (from what it keeps) as Quart does."""
    project, pipeline = setup.project_id, setup.pipeline_id
    for target in (
        "/v1/projects",
        "/v1/builds",
        "/v1/builds?status=queued",
        "/v1/builds?status=running,succeeded",
        "/v1/builds?limit=1",
        "/v1/builds?limit=1&offset=1",
        f"/v1/builds?project_id={project}",
        f"/v1/builds?project_id={project.upper()}",
        f"/v1/builds?pipeline_id={pipeline}&sort=status",
        f"/v1/builds?project_id={project}&branch=main&direction=asc",
        f"/v1/builds?project_id={MISSING}",
        f"/v1/builds/{build_id}",
        f"/v1/builds/{build_id}/logs",
        f"/v1/builds/{build_id}/logs?after_sequence=0&limit=1",
        f"/v1/builds/{build_id}/logs?before_sequence=2&limit=1&timestamps=true",
        f"/v1/builds/{build_id}/logs?attempt=1",
        "/v1/runners",
    ):
        await both.same(target, bearer(token))


async def test_kept_answers_follow_every_change(
    both: Both, setup: Setup, app: QuartTrio, make_user: UserFactory
) -> None:
    """Each write below changes what some hot read shows; right after it, every hot read
    answers on the lean side as Quart does (Quart keeps nothing), so nothing kept
    outlived what it showed. The reads between the writes are answered from memory."""
    answers = services_of(app).answers
    api, token = setup.api, setup.token
    build = await setup.trigger()
    await _all_alike(both, token, build["id"], setup)
    await _all_alike(both, token, build["id"], setup)
    assert answers.hits > 0

    runner = await setup.runner()
    member = await make_user(Role.DEVELOPER)

    async def patched(path: str, body: dict[str, Any]) -> None:
        reply = await api.call("PATCH", path, json=body, token=token)
        assert reply.status == 200, reply.body

    lines = [{"sequence": n, "content": f"line {n}", "stream": "stdout"} for n in range(3)]
    writes: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("claim", lambda: runner.claim()),
        ("running", lambda: runner.report(build["id"], "running")),
        ("lines", lambda: runner.logs(build["id"], lines)),
        ("finished", lambda: runner.report(build["id"], "succeeded", exit_code=0)),
        ("project renamed", lambda: patched(f"/v1/projects/{setup.project_id}", {"name": "b"})),
        ("pipeline renamed", lambda: patched(f"/v1/pipelines/{setup.pipeline_id}", {"name": "p"})),
        ("runner renamed", lambda: patched(f"/v1/runners/{runner.id}", {"name": "other"})),
        ("second build", lambda: setup.trigger(branch="main")),
        (
            "member added",
            lambda: api.post(
                f"/v1/projects/{setup.project_id}/members",
                json={"user_id": member.user.id, "role": "viewer"},
                token=token,
            ),
        ),
        ("rerun", lambda: api.post(f"/v1/builds/{build['id']}/rerun", token=token)),
        ("runner deleted", lambda: api.call("DELETE", f"/v1/runners/{runner.id}", token=token)),
    ]
    for name, write in writes:
        hits = answers.hits
        await _all_alike(both, member.token, build["id"], setup)  # kept for the member too
        await write()
        await _all_alike(both, token, build["id"], setup)
        await _all_alike(both, member.token, build["id"], setup)
        assert answers.hits > hits, name
    # the finished attempt's lines are kept whole, and each page is cut from them
    page = await both.same(f"/v1/builds/{build['id']}/logs?after_sequence=1", bearer(token))
    assert b'"content":"line 2"' in page.body and b'"total":3' in page.body


async def test_lists_of_other_builds_stay_kept_while_a_build_moves(
    both: Both, setup: Setup, app: QuartTrio, repo: Any
) -> None:
    """A build claimed, started and finished drops the lists that show it or that its
    project, pipeline or status narrow to; a list of another project's builds, and a page
    that shows other builds, are still answered from memory, and still as Quart answers."""
    answers = services_of(app).answers
    api, token = setup.api, setup.token
    moving = await setup.trigger()
    created = await api.post(
        "/v1/projects", json={"name": "other", "local_repository_path": str(repo)}, token=token
    )
    other = created.body["project"]["id"]
    body = {"name": "ci", "execution_config": {"commands": {"build": ["true"]}}}
    made = await api.post(f"/v1/projects/{other}/pipelines", json=body, token=token)
    pipeline = made.body["pipeline"]["id"]
    reply = await api.post(
        f"/v1/projects/{other}/builds", json={"pipeline_id": pipeline}, token=token
    )
    assert reply.status == 201, reply.body
    still = reply.body["build"]["id"]
    assert (await api.post(f"/v1/builds/{still}/cancel", token=token)).status == 200
    runner = await setup.runner()
    kept = [
        f"/v1/builds?project_id={other}",
        f"/v1/builds?pipeline_id={pipeline}&sort=status",
        f"/v1/builds?project_id={other}&status=canceled",
        "/v1/builds?limit=1",  # the newest: the other project's
    ]
    dropped = [
        f"/v1/builds?project_id={setup.project_id}",
        f"/v1/builds?pipeline_id={setup.pipeline_id}",
        "/v1/builds?status=running",
        "/v1/builds?limit=1&offset=1",
        "/v1/runners",
    ]
    for target in kept + dropped:
        await both.same(target, bearer(token))
    steps: list[Callable[[], Awaitable[object]]] = [
        lambda: runner.claim(),
        lambda: runner.report(moving["id"], "running"),
        lambda: runner.report(moving["id"], "succeeded", exit_code=0),
    ]
    for step in steps:
        await step()
        for target in kept:
            hits, misses = answers.hits, answers.misses
            await both.same(target, bearer(token))
            assert (answers.hits - hits, answers.misses - misses) == (1, 0), target
        for target in dropped:
            misses = answers.misses
            await both.same(target, bearer(token))
            assert answers.misses - misses == 1, target
    finished = await both.same(f"/v1/builds?project_id={setup.project_id}", bearer(token))
    assert b'"status":"succeeded"' in finished.body


async def test_a_kept_answer_is_found_without_reading_it_again(
    both: Both, setup: Setup, app: QuartTrio
) -> None:
    answers = services_of(app).answers
    targets = ["/v1/projects", "/v1/builds", "/v1/runners", "/v1/projects?limit=1"]
    sent = {"Host": both.host, **bearer(setup.token)}
    for target in targets:
        assert (await both.lean.get(target, sent)).status == 200
    hits, misses = answers.hits, answers.misses
    for target in targets:
        assert (await both.lean.get(target, sent)).status == 200
    assert (answers.hits - hits, answers.misses - misses) == (len(targets), 0)
