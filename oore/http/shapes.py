"""The wire shapes the API answers with, as pydantic models, for the OpenAPI document.

The domain objects' ``to_json`` methods write the answers; these models only say what
those write (tests check real answers against them). A field the code omits when empty
has a default; one it always sends, possibly ``null``, has none. Values the contract calls
free JSON (project ``settings``, runner ``capabilities``, artifact ``metadata``) are
:data:`FreeObject` / :data:`AnyJson`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from oore.domain.artifact_storage import SettingsSource, StorageProvider
from oore.domain.artifacts import ArtifactState, ArtifactType
from oore.domain.builds import BuildStatus, TriggerType
from oore.domain.integrations import AuthMode, IntegrationProvider, IntegrationStatus
from oore.domain.network import TicketSource
from oore.domain.rbac import ProjectRole
from oore.domain.runners import RunnerStatus
from oore.domain.setup import RemoteAuthMode, RuntimeMode

AnyJson = Annotated[Any, Field(description="Any JSON value, as given")]
FreeObject = Annotated[dict[str, Any], Field(description="A free JSON object, as given")]
Platform = Literal["android", "ios", "macos"]  # pipeline_config.PLATFORMS


class Shape(BaseModel):
    """A documented answer shape."""


# -- pipelines' configuration ---------------------------------------------------------------


class Commands(Shape):
    pre_build: list[str]
    build: list[str]
    post_build: list[str]


class EnvEntry(Shape):
    key: str
    value: str = Field(description="[REDACTED] where the caller may not see values")
    secret: bool | None = Field(default=None, description="Sent (true) only for secrets")


class PlatformArgs(Shape):
    android: list[str]
    ios: list[str]
    macos: list[str]


class PlatformCommands(Shape):
    android: str | None
    ios: str | None
    macos: str | None


class ExecutionConfig(Shape):
    """A pipeline's checked execution config (contract §2.6)."""

    platforms: list[Platform]
    flutter_version: str | None
    commands: Commands
    platform_build_args: PlatformArgs
    platform_commands: PlatformCommands
    env: list[EnvEntry]
    artifact_patterns: list[str]


class TriggerConfig(Shape):
    events: list[str]
    branches: list[str]


class Concurrency(Shape):
    cancel_previous: bool
    max_concurrent: int | None


class Pipeline(Shape):
    id: str
    project_id: str
    name: str
    config_path: str | None
    config_path_explicit: bool | None
    execution_config: ExecutionConfig
    trigger_config: TriggerConfig
    concurrency: Concurrency
    runner_labels: list[str]
    enabled: bool
    created_at: int
    updated_at: int


# -- builds -----------------------------------------------------------------------------------


class ConfigSnapshot(Shape):
    """The immutable copy of the pipeline's config a build runs with (contract §4.6)."""

    snapshot_version: int
    config_resolution_policy: str
    config_path: str | None
    config_path_explicit: bool | None
    ui_execution_config: ExecutionConfig
    artifact_patterns: list[str]
    trigger_type: TriggerType
    commit_sha: str | None
    branch: str | None
    repo_url: str | None
    repository_id: str | None
    captured_at: int
    selected_platforms: list[Platform] | None = None
    runner_labels: list[str] | None = None
    timeout_seconds: int | None = Field(
        default=None, description="The pipeline file's time bound for the build"
    )


class StepResult(Shape):
    name: str
    status: str
    exit_code: int | None = None
    started_at: int
    finished_at: int
    duration_ms: int


class WaitingReason(Shape):
    code: str
    message: str


class BuildContext(Shape):
    project_name: str | None = None
    pipeline_name: str | None = None
    runner_name: str | None = None


class Build(Shape):
    """A build (contract §2.7); optional fields are omitted when empty."""

    id: str
    project_id: str
    pipeline_id: str
    build_number: int
    status: BuildStatus
    trigger_type: TriggerType
    config_snapshot: ConfigSnapshot
    attempt: int
    queued_at: int
    created_at: int
    updated_at: int
    trigger_actor: str | None = None
    trigger_event: str | None = None
    trigger_ref: str | None = None
    commit_sha: str | None = None
    branch: str | None = None
    changelog: str | None = None
    source_build_id: str | None = None
    runner_id: str | None = None
    last_runner_id: str | None = None
    exit_code: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    runner_labels: list[str] | None = None
    step_results: list[StepResult] | None = None
    runner_policy_block_reason: Literal["instance_paused", "repository_unavailable"] | None = None
    waiting_reason: WaitingReason | None = Field(
        default=None, description="Queued builds in lists and details: why none runs it yet"
    )
    context: BuildContext | None = None


class BuildEvent(Shape):
    id: str
    build_id: str
    from_status: BuildStatus | None = None
    to_status: BuildStatus
    actor: str | None = None
    reason: str | None = None
    created_at: int


class LogLine(Shape):
    sequence: int
    content: str
    stream: Literal["stdout", "stderr"]
    step: int | None = None
    step_name: str | None = None
    at: int | None = Field(default=None, description="With timestamps=true")


# -- runners ------------------------------------------------------------------------------------


class Runner(Shape):
    id: str
    name: str
    status: RunnerStatus
    capabilities: AnyJson
    labels: list[str]
    max_concurrent: int
    draining: bool
    current_builds: list[str]
    created_at: int
    updated_at: int
    last_heartbeat_at: int | None = None
    registered_by: str | None = None


class EnrollmentToken(Shape):
    id: str
    label: str
    labels: list[str]
    max_uses: int | None
    uses: int
    expires_at: int | None
    revoked_at: int | None
    created_by: str | None
    created_at: int


class BuildVariable(Shape):
    name: str
    value: str
    secret: bool


class JobSigning(Shape):
    android: bool
    ios: bool


class Job(Shape):
    """A claimed build, with what the runner needs to run it (contract §5.4)."""

    build_id: str
    project_id: str
    pipeline_id: str
    build_number: int
    config_snapshot: ConfigSnapshot
    lease_expires_at: int
    signing_token: str
    attempt: int
    variables: list[BuildVariable]
    signing: JobSigning
    commit_sha: str | None = None
    branch: str | None = None


# -- artifacts ------------------------------------------------------------------------------


class Artifact(Shape):
    id: str
    build_id: str
    name: str
    artifact_type: ArtifactType
    file_path: str
    file_size: int | None
    checksum: str | None
    metadata: AnyJson
    created_at: int
    state: ArtifactState
    expires_at: int | None = None


class ArtifactToken(Shape):
    id: str
    artifact_id: str
    prefix: str
    created_by: str | None
    created_by_email: str | None
    expires_at: int
    single_use: bool
    used_at: int | None = None
    revoked_at: int | None = None
    is_expired: bool
    is_used: bool
    is_revoked: bool
    created_at: int


# -- projects --------------------------------------------------------------------------------


class Project(Shape):
    id: str
    name: str
    settings: FreeObject
    created_by: str | None
    created_at: int
    updated_at: int
    description: str | None = None
    default_branch: str | None = None
    repository_id: str | None = None
    repository_full_name: str | None = None
    repository_provider: IntegrationProvider | None = None
    current_user_role: ProjectRole | None = None


class Member(Shape):
    project_id: str
    user_id: str
    email: str
    display_name: str | None = None
    role: ProjectRole
    created_at: int


class Candidate(Shape):
    id: str
    email: str
    display_name: str | None = None
    role: str
    status: str


class Variable(Shape):
    id: str
    name: str
    secret: bool
    scope: Literal["project", "pipeline"]
    project_id: str
    pipeline_id: str | None = None
    value: str | None = Field(default=None, description="Omitted for secrets")
    created_at: int
    updated_at: int


# -- integrations ---------------------------------------------------------------------------


class Integration(Shape):
    id: str
    provider: IntegrationProvider
    host_url: str | None
    auth_mode: AuthMode
    status: IntegrationStatus
    display_name: str | None
    app_id: str | None = None
    app_slug: str | None = None
    created_by: str | None
    created_at: int
    updated_at: int


class Problem(Shape):
    code: str
    message: str
    at: int


class Installation(Shape):
    id: str
    integration_id: str
    external_id: str
    account_name: str
    account_type: str | None
    created_at: int


class Repository(Shape):
    id: str
    installation_id: str
    external_id: str
    full_name: str
    default_branch: str | None
    is_private: bool
    avatar_url: str | None = None
    created_at: int
    updated_at: int


class LocalGitIntegration(Integration):
    local_path: str | None


# -- settings ---------------------------------------------------------------------------------


class StorageSettings(Shape):
    provider: StorageProvider
    local_base_dir: str | None = None
    s3_bucket: str | None = None
    s3_region: str | None = None
    s3_endpoint: str | None = None
    has_access_key_id: bool
    has_secret_access_key: bool
    source: SettingsSource
    updated_at: int | None = None


class Preferences(Shape):
    key_storage_mode: Literal["file"]
    runtime_mode: RuntimeMode
    remote_auth_mode: RemoteAuthMode
    direct_macos_runner_paused: bool
    restart_required: bool
    updated_at: int | None = None


class NetworkSettings(Shape):
    public_url: str | None = None
    artifact_delivery_url: str | None = None
    allowed_origins: list[str]
    source: SettingsSource
    updated_at: int | None = None


class TrustedProxySettings(Shape):
    user_email_header: str
    trusted_proxy_cidrs: list[str]
    has_shared_secret: bool
    has_warpgate_ticket: bool
    warpgate_ticket_source: TicketSource | None = None
    updated_at: int | None = None


class PreflightCheck(Shape):
    id: str
    label: str
    ok: bool
    message: str
    failure_code: str | None = None


class WorkflowStep(Shape):
    name: str
    run: str
    env: list[EnvEntry]
    timeout: int | None = None
    continue_on_error: bool
    if_: Literal["success()", "failure()", "always()"] = Field(alias="if")


class WorkflowConfig(ExecutionConfig):
    """A parsed pipeline file as a preview shows it, every environment value hidden."""

    steps: list[WorkflowStep] | None = None
    runner_labels: list[str] | None = None
    timeout: int | None = None
