"""What a claim hands to a runner (contract §5.4, plus ``attempt``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from oore.domain.builds import Build
from oore.domain.crypto import SecretBox, encryption_error
from oore.domain.variables import BuildVariable, build_variables
from oore.store.variables import StoredVariable


@dataclass(frozen=True)
class Job:
    """A build committed to a runner, with what the runner needs to run it."""

    build: Build
    signing_token: str
    lease_expires_at: int
    # The project's and pipeline's variables in clear: only ever in this answer, to the
    # runner holding the build, never in the snapshot.
    variables: tuple[BuildVariable, ...] = field(default=(), repr=False)
    # Whether the runner is to fetch the pipeline's Android and iOS signing material (§5.6).
    android_signing: bool = False
    ios_signing: bool = False
    # The pipeline's signing passwords, sealed: what the build's log must not show. Kept
    # for the log, never in the answer.
    sealed_passwords: tuple[str, ...] = field(default=(), repr=False)

    def to_json(self) -> dict[str, Any]:
        build = self.build
        job: dict[str, Any] = {
            "build_id": build.id,
            "project_id": build.project_id,
            "pipeline_id": build.pipeline_id,
            "build_number": build.build_number,
            "config_snapshot": build.config_snapshot,
            "lease_expires_at": self.lease_expires_at,
            "signing_token": self.signing_token,
            "attempt": build.attempt,
            "variables": [variable.to_json() for variable in self.variables],
            "signing": {"android": self.android_signing, "ios": self.ios_signing},
        }
        if build.commit_sha:
            job["commit_sha"] = build.commit_sha
        if build.branch:
            job["branch"] = build.branch
        return job


def clear_variables(
    stored: Sequence[StoredVariable], secrets: SecretBox | None
) -> tuple[BuildVariable, ...]:
    """The build's variables in clear (the pipeline's override the project's by name)."""
    if not stored:
        return ()
    if secrets is None:
        raise encryption_error()
    box = secrets

    def clear(rows: list[StoredVariable]) -> list[BuildVariable]:
        return [BuildVariable(r.name, box.decrypt(r.value_encrypted), r.secret) for r in rows]

    return build_variables(
        clear([r for r in stored if r.pipeline_id is None]),
        clear([r for r in stored if r.pipeline_id is not None]),
    )
