"""OpenID Connect sign-in rules (contract §7.3, §7.4)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OidcConfig:
    """The stored provider configuration; the client secret stays encrypted."""

    issuer_url: str
    client_id: str
    client_secret_enc: str | None
    configured_at: int
    updated_at: int

    @property
    def has_client_secret(self) -> bool:
        return self.client_secret_enc is not None
