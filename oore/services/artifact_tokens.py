"""Scoped download tokens and install links of artifacts (contract §7.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oore.domain.artifact_tokens import (
    PREFIX_CHARS,
    ArtifactToken,
    Platform,
    TokenKind,
    check_scoped_ttl,
    install_base,
    install_ttl,
    invalid_token,
    ios_app_of,
    ios_manifest,
    itms_services_url,
    manifest_url,
    platform_of,
    redeem_url,
    require_https,
)
from oore.domain.artifacts import Artifact, ArtifactState, ArtifactType
from oore.domain.ids import new_id
from oore.domain.network import with_warpgate_ticket
from oore.domain.rbac import ProjectPermission, is_instance_admin, require_project
from oore.domain.tokens import hash_token, looks_like_token, new_token
from oore.domain.users import Session
from oore.errors import Forbidden, Gone, NotFound
from oore.services.access import Access
from oore.services.artifact_storage import ArtifactStorageService
from oore.services.artifacts import stored_object
from oore.services.clock import WallClock
from oore.services.identity import AuditSink
from oore.services.settings import WarpgateTickets
from oore.storage import LocalStorage
from oore.store import AuditEntry, Store
from oore.store.artifact_tokens import NewArtifactToken


def artifact_expired() -> Gone:
    return Gone("artifact_expired", "The artifact has expired")


@dataclass(frozen=True)
class ScopedToken:
    """A freshly minted scoped token: the only time its text is seen."""

    row: ArtifactToken
    token: str
    download_url: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.row.id,
            "download_url": self.download_url,
            "token": self.token,
            "prefix": self.row.prefix,
            "expires_at": self.row.expires_at,
            "single_use": self.row.single_use,
        }


@dataclass(frozen=True)
class TokenList:
    """An artifact's tokens and the time they were listed at (for ``is_expired``)."""

    tokens: list[ArtifactToken]
    now: int

    def to_json(self) -> dict[str, Any]:
        return {"tokens": [t.to_json(self.now) for t in self.tokens]}


@dataclass(frozen=True)
class InstallLink:
    platform: Platform
    install_url: str
    download_url: str
    manifest_url: str | None
    expires_at: int

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "platform": self.platform.value,
            "install_url": self.install_url,
            "download_url": self.download_url,
        }
        if self.manifest_url is not None:
            body["manifest_url"] = self.manifest_url
        body["expires_at"] = self.expires_at
        return body


class ArtifactTokens:
    """Minting, listing, revoking and redeeming artifact tokens; install links."""

    def __init__(
        self,
        store: Store,
        clock: WallClock,
        access: Access,
        audit: AuditSink,
        storage: ArtifactStorageService,
        warpgate: WarpgateTickets,
    ) -> None:
        self._store = store
        self._clock = clock
        self._access = access
        self._audit = audit
        self._storage = storage
        self._warpgate = warpgate

    async def _ticket_for(self, artifact: Artifact) -> str | None:
        """The Warpgate ticket iOS installs carry through a Warpgate proxy: an iPhone
        fetching a manifest or an IPA cannot sign in interactively. Only for IPAs."""
        if artifact.artifact_type is not ArtifactType.IPA:
            return None
        return await self._warpgate.in_force()

    async def _artifact(
        self, session: Session, artifact_id: str, permission: ProjectPermission
    ) -> Artifact:
        """An available artifact the caller may act on: 404 hidden or unknown, 403 denied."""
        artifact = await self._store.artifacts.get(artifact_id)
        if artifact is None or artifact.state is not ArtifactState.AVAILABLE:
            raise NotFound("not_found", "Artifact not found")
        role = await self._access.role_on(session, artifact.project_id)
        if role is None:
            raise NotFound("not_found", "Artifact not found")
        require_project(role, permission)
        return artifact

    async def _mint(
        self,
        session: Session,
        artifact: Artifact,
        kind: TokenKind,
        *,
        ttl: int,
        single_use: bool,
        now: int,
    ) -> tuple[ArtifactToken, str]:
        token = new_token()
        row = await self._store.artifact_tokens.insert(
            NewArtifactToken(
                id=new_id(),
                artifact_id=artifact.id,
                kind=kind,
                token_hash=hash_token(token),
                prefix=token[:PREFIX_CHARS],
                created_by=session.user.id,
                single_use=single_use,
                expires_at=now + ttl,
                now=now,
            )
        )
        return row, token

    async def _record(
        self, session: Session | None, action: str, resource_id: str, details: dict[str, Any]
    ) -> None:
        await self._audit.submit_one(
            AuditEntry.by(
                None if session is None else session.user,
                action,
                "artifact",
                resource_id,
                details=details,
                created_at=self._clock.now(),
            )
        )

    # -- scoped tokens -------------------------------------------------------------------

    async def create(
        self, session: Session, artifact_id: str, *, ttl_secs: int | None, single_use: bool
    ) -> ScopedToken:
        """``POST /v1/artifacts/{id}/scoped-token`` (WriteArtifacts): 400
        ``validation_error`` for a TTL outside 60 s..7 d, 404, 403, 410."""
        ttl = check_scoped_ttl(ttl_secs)
        artifact = await self._artifact(session, artifact_id, ProjectPermission.WRITE_ARTIFACTS)
        now = self._clock.now()
        if artifact.expired(now):
            raise artifact_expired()
        row, token = await self._mint(
            session, artifact, TokenKind.DOWNLOAD, ttl=ttl, single_use=single_use, now=now
        )
        await self._record(
            session,
            "artifact_scoped_token_created",
            artifact.id,
            {
                "token_id": row.id,
                "artifact_id": artifact.id,
                "token_prefix": row.prefix,
                "single_use": single_use,
                "ttl_secs": ttl,
                "expires_at": row.expires_at,
            },
        )
        return ScopedToken(row, token, redeem_url(self._storage.public_base(), token))

    async def tokens_of(self, session: Session, artifact_id: str) -> TokenList:
        """``GET /v1/artifacts/{id}/scoped-tokens`` (WriteArtifacts), newest first."""
        artifact = await self._artifact(session, artifact_id, ProjectPermission.WRITE_ARTIFACTS)
        found = await self._store.artifact_tokens.for_artifact(artifact.id, TokenKind.DOWNLOAD)
        return TokenList(found, self._clock.now())

    async def revoke(self, session: Session, token_id: str) -> None:
        """``DELETE /v1/artifact-tokens/{id}``: idempotent; 404 unknown; 403
        ``permission_denied`` for another user's token unless owner or admin."""
        found = await self._store.artifact_tokens.get(token_id)
        if found is None:
            raise NotFound("not_found", "Artifact token not found")
        if found.created_by != session.user.id and not is_instance_admin(session.user.role):
            raise Forbidden("permission_denied", "Only its creator or an admin may revoke it")
        if found.revoked_at is not None:
            return
        await self._store.artifact_tokens.revoke(found.id, self._clock.now())
        await self._record(
            session, "artifact_scoped_token_revoked", found.artifact_id, {"token_id": found.id}
        )

    async def _live(self, token: str) -> tuple[ArtifactToken, Artifact]:
        """The usable token and its available artifact: 401 ``invalid_token``, 410."""
        if not looks_like_token(token):
            raise invalid_token()
        row = await self._store.artifact_tokens.by_hash(hash_token(token))
        now = self._clock.now()
        if row is None or not row.usable(now):
            raise invalid_token()
        artifact = await self._store.artifacts.get(row.artifact_id)
        if artifact is None or artifact.state is not ArtifactState.AVAILABLE:
            raise invalid_token()
        if artifact.expired(now):
            raise artifact_expired()
        return row, artifact

    async def redeem(self, token: str) -> str:
        """``GET /install/artifact/{token}``: a fresh 15-minute storage URL to redirect to.

        A single-use token is consumed only once the URL exists, by a compare-and-set in
        the store, so of two concurrent redeems exactly one gets a URL. An IPA's local
        download URL carries the ``warpgate-ticket`` query parameter in Warpgate
        trusted-proxy mode (§7.2).
        """
        row, artifact = await self._live(token)
        backend = self._storage.backend
        obj = stored_object(artifact)
        if isinstance(backend, LocalStorage):
            url = await backend.delivery_url(obj, self._storage.delivery_base())
            # A presigned object-store URL is signed over its query: nothing may be added.
            url = with_warpgate_ticket(url, await self._ticket_for(artifact))
        else:
            url = await backend.download_url(obj)
        if row.single_use and not await self._store.artifact_tokens.consume(
            row.id, self._clock.now()
        ):
            raise invalid_token()
        await self._record(
            None, "artifact_scoped_token_redeemed", artifact.id, {"token_id": row.id}
        )
        return url

    # -- install links -------------------------------------------------------------------

    async def install_link(self, session: Session, artifact_id: str) -> InstallLink:
        """``POST /v1/artifacts/{id}/install-link`` (ReadArtifacts): 404, 403, 410, 422
        ``artifact_not_installable``, 412 ``external_access_required`` /
        ``external_access_invalid`` / ``ios_install_requires_https``, 422
        ``ios_artifact_not_installable``. In Warpgate trusted-proxy mode an iOS link's
        download and manifest URLs carry the ``warpgate-ticket`` query parameter."""
        artifact = await self._artifact(session, artifact_id, ProjectPermission.READ_ARTIFACTS)
        now = self._clock.now()
        if artifact.expired(now):
            raise artifact_expired()
        platform = platform_of(artifact)
        base = install_base(*self._storage.external_urls)
        if platform is Platform.IOS:
            require_https(base)
            ios_app_of(artifact)
        ticket = await self._ticket_for(artifact)  # before minting: a 500 leaves no token
        row, token = await self._mint(
            session,
            artifact,
            TokenKind.INSTALL,
            ttl=install_ttl(artifact, now),
            single_use=False,
            now=now,
        )
        await self._record(
            session,
            "artifact_install_link_generated",
            artifact.id,
            {
                "token_id": row.id,
                "artifact_id": artifact.id,
                "platform": platform.value,
                "token_prefix": row.prefix,
                "expires_at": row.expires_at,
            },
        )
        download = redeem_url(base, token)
        if platform is Platform.ANDROID:
            return InstallLink(platform, download, download, None, row.expires_at)
        download = with_warpgate_ticket(download, ticket)
        manifest = with_warpgate_ticket(manifest_url(base, token), ticket)
        return InstallLink(
            platform, itms_services_url(manifest), download, manifest, row.expires_at
        )

    async def ios_manifest(self, token: str) -> bytes:
        """``GET /install/ios/{token}/manifest.plist``: 401 ``invalid_token``, 410, 422."""
        row, artifact = await self._live(token)
        if row.kind is not TokenKind.INSTALL or platform_of(artifact) is not Platform.IOS:
            raise invalid_token()
        app = ios_app_of(artifact)
        base = install_base(*self._storage.external_urls)
        download = with_warpgate_ticket(redeem_url(base, token), await self._ticket_for(artifact))
        return ios_manifest(app, download)
