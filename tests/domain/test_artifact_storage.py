"""Artifact storage settings: validation, views and the endpoint rule (§7.1, §10.1)."""

from __future__ import annotations

from typing import Any

import pytest

from oore.domain.artifact_storage import (
    EnvironmentStorage,
    SettingsSource,
    StorageProvider,
    StorageUpdate,
    StoredStorageSettings,
    check_update,
    default_view,
    environment_target,
    url_problem,
    view_of_environment,
    view_of_row,
)
from oore.errors import InvalidInput

S3 = StorageProvider.S3


@pytest.mark.parametrize(
    ("update", "stored", "code"),
    [
        (StorageUpdate(StorageProvider.LOCAL), False, "invalid_local_base_dir"),
        (
            StorageUpdate(StorageProvider.LOCAL, local_base_dir="rel/dir"),
            False,
            "invalid_local_base_dir",
        ),
        (StorageUpdate(S3, access_key_id="k", secret_access_key="s"), False, "invalid_s3_bucket"),
        (
            StorageUpdate(
                StorageProvider.R2, s3_bucket="b", access_key_id="k", secret_access_key="s"
            ),
            False,
            "invalid_s3_endpoint",
        ),
        (StorageUpdate(S3, s3_bucket="b"), False, "missing_s3_credentials"),
        (StorageUpdate(S3, s3_bucket="b", access_key_id="k"), False, "missing_s3_credentials"),
        (StorageUpdate(S3, s3_bucket="b", secret_access_key="s"), False, "missing_s3_credentials"),
    ],
)
def test_invalid_updates(update: StorageUpdate, stored: bool, code: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_update(update, stored_key_id=stored, stored_secret=stored)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("update", "stored"),
    [
        (StorageUpdate(StorageProvider.DISABLED), False),
        (StorageUpdate(StorageProvider.LOCAL, local_base_dir="/srv/artifacts"), False),
        (StorageUpdate(S3, s3_bucket="b", access_key_id="k", secret_access_key="s"), False),
        (StorageUpdate(S3, s3_bucket="b"), True),  # keys kept from the last update
        (StorageUpdate(StorageProvider.R2, s3_bucket="b", s3_endpoint="https://r2.example"), True),
    ],
)
def test_valid_updates(update: StorageUpdate, stored: bool) -> None:
    check_update(update, stored_key_id=stored, stored_secret=stored)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://s3.example.com", True),
        ("https://s3.example.com:8443/", True),
        ("http://127.0.0.1:9000", True),
        ("http://127.8.9.10", True),
        ("http://[::1]:9000", True),
        ("http://localhost:9000", False),
        ("http://s3.example.com", False),
        ("https://user:pass@s3.example.com", False),
        ("https://key@s3.example.com", False),
        ("ftp://s3.example.com", False),
        ("s3.example.com", False),
        ("https://s3.example.com?x=1", False),
        ("https://s3.example.com#frag", False),
        ("https://s3.example.com:99999", False),
    ],
)
def test_endpoint_rule(url: str, ok: bool) -> None:
    assert (url_problem(url) is None) is ok


def test_a_generated_url_may_carry_a_query_but_the_same_host_rules() -> None:
    assert url_problem("http://127.0.0.1:9000/b/k?X-Amz-Signature=1", generated=True) is None
    assert url_problem("http://10.0.0.1/b/k?X-Amz-Signature=1", generated=True) is not None


def test_views_of_each_source() -> None:
    row = StoredStorageSettings(
        S3,
        s3_bucket="b",
        s3_region="eu-west-1",
        access_key_id_encrypted="enc",
        updated_at=5,
    )
    assert view_of_row(row).to_json() == {
        "provider": "s3",
        "s3_bucket": "b",
        "s3_region": "eu-west-1",
        "has_access_key_id": True,
        "has_secret_access_key": False,
        "source": "database",
        "updated_at": 5,
    }
    env = EnvironmentStorage(bucket=" b ", access_key_id="k", secret_access_key="s")
    shown: dict[str, Any] = view_of_environment(env).to_json()
    assert shown == {
        "provider": "s3",
        "s3_bucket": "b",
        "s3_region": "us-east-1",
        "has_access_key_id": True,
        "has_secret_access_key": True,
        "source": "environment",
    }
    target = environment_target(env)
    assert (target.access_key_id, target.secret_access_key, target.endpoint) == ("k", "s", None)
    assert "'k'" not in repr(target) and "'s'" not in repr(env)
    assert default_view("/data/artifacts").to_json() == {
        "provider": "local",
        "local_base_dir": "/data/artifacts",
        "has_access_key_id": False,
        "has_secret_access_key": False,
        "source": "default",
    }
    assert default_view(None).source is SettingsSource.DEFAULT
    assert default_view(None).provider is StorageProvider.DISABLED
    assert not EnvironmentStorage(bucket="  ").configured
