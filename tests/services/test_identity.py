"""Credentials found good are trusted a few seconds, unless access may have ended since."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from oore.domain.tokens import hash_token, new_token
from oore.domain.users import Role, Session, User, UserStatus
from oore.errors import Unauthorized
from oore.live.fanout import GrantEpoch
from oore.services.identity import CREDENTIAL_TRUST_SECONDS, CredentialCache, Identity
from oore.store import AuditEntry, Store


class Clock:
    def __init__(self) -> None:
        self.value = 1_800_000_000

    def now(self) -> int:
        return self.value


class Audit:
    async def submit_one(self, row: AuditEntry) -> None:
        pass


class People:
    """Users with a session each, straight in the store."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._counter = itertools.count()

    async def signed_in(self, *, ttl: int = 3600) -> tuple[str, str]:
        """A new user's id, and the Authorization header of a session of theirs."""
        user = await self._store.users.create(
            email=f"dev{next(self._counter)}@example.com",
            role=Role.DEVELOPER,
            status=UserStatus.ACTIVE,
            subject=None,
            now=self._clock.now(),
        )
        token = new_token()
        now = self._clock.now()
        await self._store.users.create_session(hash_token(token), user.id, now, now + ttl)
        return user.id, f"Bearer {token}"

    async def end(self, header: str) -> None:
        """End the session in the database, telling no one."""
        assert await self._store.users.delete_session(hash_token(header.removeprefix("Bearer ")))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def people(store: Store, clock: Clock) -> People:
    return People(store, clock)


@pytest.fixture
def epoch() -> GrantEpoch:
    return GrantEpoch()


@pytest.fixture
def identity(store: Store, clock: Clock, epoch: GrantEpoch) -> Identity:
    return Identity(store, clock, Audit(), access_changed=epoch.moved, grant_epoch=epoch)


async def test_an_ended_session_holds_only_until_the_epoch_moves(
    identity: Identity, epoch: GrantEpoch, people: People
) -> None:
    user_id, header = await people.signed_in()
    assert (await identity.authenticate(header)).user.id == user_id

    # Ended behind the daemon's back: the credential is not looked up again at once...
    await people.end(header)
    assert (await identity.authenticate(header)).user.id == user_id
    # ... but a change that may take access away (here or on another daemon) moves the
    # epoch, and the next request is looked up.
    epoch.moved()
    with pytest.raises(Unauthorized):
        await identity.authenticate(header)
    with pytest.raises(Unauthorized):  # a refusal is never remembered as good
        await identity.authenticate(header)


async def test_trust_ends_after_its_seconds_and_at_the_credentials_own_expiry(
    identity: Identity, clock: Clock, people: People
) -> None:
    _, header = await people.signed_in()
    await identity.authenticate(header)
    await people.end(header)
    clock.value += int(CREDENTIAL_TRUST_SECONDS)
    with pytest.raises(Unauthorized):
        await identity.authenticate(header)

    # A session that expires within its trust is refused at its expiry, unasked.
    _, header = await people.signed_in(ttl=2)
    await identity.authenticate(header)
    clock.value += 2
    with pytest.raises(Unauthorized):
        await identity.authenticate(header)


async def test_the_monotonic_clock_ends_trust_too(clock: Clock) -> None:
    """Whichever clock says so first: a wall clock set back does not extend trust."""
    epoch = GrantEpoch()
    cache = CredentialCache(epoch, trust_seconds=0.05)
    session = Session("h" * 64, _user(), None)
    cache.put(session, epoch.value, clock.now())
    assert cache.get(session.token_hash, clock.now()) is session
    clock.value -= 3600
    await trio.sleep(0.06)
    assert cache.get(session.token_hash, clock.now()) is None


async def test_an_epoch_read_before_a_lookup_that_a_change_overtook_is_not_trusted(
    clock: Clock,
) -> None:
    """The epoch is read before the lookup: a change committed during it moves the epoch
    after, so what the lookup found is never trusted past it."""
    epoch = GrantEpoch()
    cache = CredentialCache(epoch)
    before = epoch.value
    epoch.moved()  # a logout committed while the lookup ran
    session = Session("h" * 64, _user(), None)
    cache.put(session, before, clock.now())
    assert cache.get(session.token_hash, clock.now()) is None


async def test_a_flood_of_credentials_does_not_grow_it_without_bound(clock: Clock) -> None:
    epoch = GrantEpoch()
    cache = CredentialCache(epoch, size=3)
    sessions = [Session(f"{i:064d}", _user(), None) for i in range(4)]
    for session in sessions:
        cache.put(session, epoch.value, clock.now())
    assert cache.get(sessions[3].token_hash, clock.now()) is sessions[3]
    assert [cache.get(s.token_hash, clock.now()) for s in sessions[:3]] == [None] * 3


FAR = 10**12


class _Lookups:
    """A credential's lookups: each held until released, each finding a new session."""

    def __init__(self, *, fail: bool = False) -> None:
        self.begun: list[int] = []
        self.release = trio.Event()
        self.fail = fail

    async def __call__(self) -> Session | None:
        self.begun.append(len(self.begun))
        number = len(self.begun)
        await self.release.wait()
        if self.fail:
            raise OSError("the database went away")
        return Session("h" * 64, _user(), FAR + number)  # the expiry tells them apart


async def test_callers_presenting_one_credential_at_once_share_one_lookup(clock: Clock) -> None:
    cache = CredentialCache(GrantEpoch())
    lookups = _Lookups()
    found: list[Session | None] = []

    async def present() -> None:
        found.append(await cache.find("h" * 64, clock.now(), lookups))

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(present)
        await trio.testing.wait_all_tasks_blocked()
        lookups.release.set()
    assert len(lookups.begun) == 1
    assert len(found) == 50 and all(s is found[0] for s in found) and found[0] is not None
    assert await cache.find("h" * 64, clock.now(), lookups) is found[0]  # remembered


async def test_a_caller_after_a_change_does_not_share_a_lookup_from_before_it(
    clock: Clock,
) -> None:
    epoch = GrantEpoch()
    cache = CredentialCache(epoch)
    lookups = _Lookups()
    found: dict[str, Session | None] = {}

    async def present(who: str) -> None:
        found[who] = await cache.find("h" * 64, clock.now(), lookups)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(present, "before")
        await trio.testing.wait_all_tasks_blocked()
        epoch.moved()  # a token revoked while the first lookup ran
        nursery.start_soon(present, "after")
        await trio.testing.wait_all_tasks_blocked()
        lookups.release.set()
    assert len(lookups.begun) == 2
    after = found["after"]
    assert after is not None and after.expires_at == FAR + 2
    assert cache.get("h" * 64, clock.now()) is after  # not what was found before it


async def test_a_lookup_that_fails_leaves_the_others_to_look_up_themselves(
    clock: Clock,
) -> None:
    cache = CredentialCache(GrantEpoch())
    lookups = _Lookups(fail=True)
    failed = 0

    async def present() -> None:
        nonlocal failed
        try:
            await cache.find("h" * 64, clock.now(), lookups)
        except OSError:
            failed += 1

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(present)
        await trio.testing.wait_all_tasks_blocked()
        lookups.release.set()
    assert failed == 3 and len(lookups.begun) >= 2


def _user() -> User:
    return User(
        id="00000000-0000-0000-0000-000000000001",
        email="dev@example.com",
        display_name=None,
        role=Role.DEVELOPER,
        status=UserStatus.ACTIVE,
        oidc_subject="local:dev@example.com",
        avatar_url=None,
        created_at=0,
        updated_at=0,
    )
