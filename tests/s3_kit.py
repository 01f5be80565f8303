"""A real S3-compatible server for tests: moto in server mode on a loopback port."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from oore.domain.artifact_storage import StorageProvider, StorageTarget

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY_ID = "AKIATESTTESTTEST"
SECRET_ACCESS_KEY = "test-secret-access-key"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """The server's endpoint and a plain boto3 client to look at what it holds."""

    endpoint: str

    def client(self) -> S3Client:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}),
        )

    def new_bucket(self) -> str:
        """A fresh bucket (moto keeps its buckets for the whole test process). Blocking."""
        name = f"oore-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        """The keys in the bucket. Blocking."""
        listed = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def read(self, bucket: str, key: str) -> bytes:
        """An object's bytes. Blocking."""
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def target(self, bucket: str, provider: StorageProvider = StorageProvider.S3) -> StorageTarget:
        return StorageTarget(
            provider,
            bucket=bucket,
            region=REGION,
            endpoint=self.endpoint,
            access_key_id=ACCESS_KEY_ID,
            secret_access_key=SECRET_ACCESS_KEY,
        )


@pytest.fixture
def s3_server() -> Iterator[S3Server]:
    """moto's S3 on 127.0.0.1 and a port of the kernel's choosing, stopped afterwards."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        _, port = server.get_host_and_port()
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
