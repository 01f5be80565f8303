"""The App Store Connect client against the loopback fake: tokens, pages, failures."""

from __future__ import annotations

import pytest

from oore.domain.ios_signing import NewDevice
from oore.errors import ApiError
from oore.services.apple import AppleClient, AppleKey, api_token
from tests.apple_kit import ISSUER_ID, KEY_ID, FakeAppStoreConnect, fake_apple, new_p8

__all__ = ["fake_apple"]

NOW = 1_800_000_000


def key(fake: FakeAppStoreConnect) -> AppleKey:
    return AppleKey(KEY_ID, ISSUER_ID, fake.p8)


async def test_every_call_carries_a_token_apple_accepts(fake_apple: FakeAppStoreConnect) -> None:
    for n in range(5):
        fake_apple.add_device(f"D{n}", f"Phone {n}", f"UDID-{n}")
    async with AppleClient(fake_apple.config).session(key(fake_apple), NOW) as apple:
        devices = await apple.devices()
    assert [d.id for d in devices] == ["D0", "D1", "D2", "D3", "D4"]  # three pages
    assert len(fake_apple.requests) == 3
    for request in fake_apple.requests:
        header, claims = fake_apple.claims(request)
        assert header == {"alg": "ES256", "kid": KEY_ID, "typ": "JWT"}
        assert claims == {
            "iss": ISSUER_ID,
            "iat": NOW,
            "exp": NOW + 900,
            "aud": "appstoreconnect-v1",
        }


async def test_a_token_from_another_key_is_refused_with_apples_words(
    fake_apple: FakeAppStoreConnect,
) -> None:
    other = AppleKey(KEY_ID, ISSUER_ID, new_p8())
    with pytest.raises(ApiError) as caught:
        async with AppleClient(fake_apple.config).session(other, NOW) as apple:
            await apple.devices()
    assert (caught.value.status, caught.value.code) == (502, "apple_api_error")
    assert "HTTP 401: NOT_AUTHORIZED" in caught.value.message
    assert other.private_key_pem.splitlines()[1] not in caught.value.message
    assert "PRIVATE" not in repr(other)


async def test_a_next_page_outside_the_api_is_not_followed(
    fake_apple: FakeAppStoreConnect,
) -> None:
    for n in range(3):
        fake_apple.add_device(f"D{n}", f"Phone {n}", f"UDID-{n}")
    fake_apple.next_base = "http://127.0.0.1:9"  # another server: the token must not go there
    with pytest.raises(ApiError) as caught:
        async with AppleClient(fake_apple.config).session(key(fake_apple), NOW) as apple:
            await apple.devices()
    assert caught.value.code == "apple_api_error"
    assert "outside its API" in caught.value.message
    assert len(fake_apple.requests) == 1


async def test_registration_conflicts_are_409(fake_apple: FakeAppStoreConnect) -> None:
    fake_apple.add_device("D1", "Phone", "UDID-1")
    async with AppleClient(fake_apple.config).session(key(fake_apple), NOW) as apple:
        with pytest.raises(ApiError) as caught:
            await apple.register_device(NewDevice("Again", "UDID-1", "IOS"))
        created = await apple.register_device(NewDevice("Mac", "UDID-2", "MAC_OS"))
    assert (caught.value.status, caught.value.code) == (409, "device_already_registered")
    assert (created.udid, created.platform) == ("UDID-2", "MAC_OS")


def test_an_unusable_key_is_502_without_the_key() -> None:
    with pytest.raises(ApiError) as caught:
        api_token(AppleKey(KEY_ID, ISSUER_ID, "-----BEGIN PRIVATE KEY-----\nbroken\n"), NOW)
    assert (caught.value.status, caught.value.code) == (502, "apple_api_error")
    assert "broken" not in caught.value.message
