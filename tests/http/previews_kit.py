"""One repository behind each kind of source: a local git project, and the same commits
served by the loopback GitHub and GitLab (tests/scm_kit.py), each with a pipeline."""

from __future__ import annotations

import itertools
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from oore.domain.builds import BuildStatus, Transition, TriggerType
from oore.domain.integrations import (
    AuthMode,
    IntegrationProvider,
    IntegrationStatus,
    RemoteRepository,
)
from oore.runtime import Runtime
from oore.services.scm import ScmConfig
from oore.store import Store
from oore.store.builds import NewBuild
from oore.store.integrations import NewIntegration
from tests.http.builds_kit import git
from tests.http.conftest import Api, FakeClock, Reply
from tests.scm_kit import APP_ID, GITLAB_TOKEN, INSTALLATION_ID, FakeScm

KINDS = ("local_git", "github", "gitlab")
GITHUB_NAME = "acme/app"
GITLAB_ID = "2002"


@pytest.fixture
def scm_config(fake_scm: FakeScm) -> ScmConfig:
    return fake_scm.scm_config


@dataclass
class Repos:
    api: Api
    token: str
    repo: Path
    scm: FakeScm
    projects: dict[str, str] = field(default_factory=dict)
    pipelines: dict[str, str] = field(default_factory=dict)

    def commit(self, files: dict[str, str | bytes], message: str, author: str = "Ada") -> str:
        """Write the files and commit them; the new commit's SHA."""
        for name, content in files.items():
            path = self.repo / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        git(self.repo, "add", *files)
        git(
            self.repo,
            "-c",
            f"user.name={author}",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            message,
            f"--author={author} <{author.lower().replace(' ', '.')}@example.com>",
        )
        return git(self.repo, "rev-parse", "HEAD")

    def many_commits(self, titles: list[str], author: str = "Dana") -> None:
        """One commit per title on ``main`` (oldest first) in one ``git fast-import``."""
        stream = bytearray()
        for n, title in enumerate(titles):
            message = f"{title}\n".encode()
            stream += f"commit refs/heads/main\ncommitter {author} <d@example.com> ".encode()
            stream += f"{1_800_000_000 + n} +0000\ndata {len(message)}\n".encode() + message
            stream += b"from refs/heads/main^0\n\n" if n == 0 else b"\n"
        subprocess.run(
            ["git", "-C", str(self.repo), "fast-import", "--quiet"], input=bytes(stream), check=True
        )

    def stage_empty(self, names: list[str]) -> None:
        """Add empty files to the next commit through the index (writing them out is slow)."""
        empty = (
            subprocess.run(
                ["git", "-C", str(self.repo), "hash-object", "-w", "--stdin"],
                input=b"",
                capture_output=True,
                check=True,
            )
            .stdout.decode()
            .strip()
        )
        subprocess.run(
            ["git", "-C", str(self.repo), "update-index", "--add", "--index-info"],
            input="".join(f"100644 {empty}\t{name}\n" for name in names).encode(),
            check=True,
        )

    async def get(self, url: str, token: str | None = None, **query: str) -> Reply:
        search = urlencode(query)
        return await self.api.get(f"{url}?{search}" if search else url, token=token or self.token)

    async def pipeline(self, kind: str, **body: Any) -> str:
        reply = await self.api.post(
            f"/v1/projects/{self.projects[kind]}/pipelines",
            json={"name": f"p{len(self.pipelines)}-{kind}", **body},
            token=self.token,
        )
        assert reply.status == 201, reply.body
        pipeline_id: str = reply.body["pipeline"]["id"]
        return pipeline_id


async def succeeded_build(
    store: Store,
    clock: FakeClock,
    project_id: str,
    pipeline_id: str,
    commit: str,
    status: BuildStatus = BuildStatus.SUCCEEDED,
) -> str:
    """A build of the pipeline at ``commit`` that ran and ended in ``status`` (written to
    the store directly)."""
    build = await store.builds.create(
        NewBuild(
            project_id=project_id,
            pipeline_id=pipeline_id,
            trigger_type=TriggerType.MANUAL,
            trigger_actor="test",
            trigger_event=None,
            trigger_ref="main",
            commit_sha=commit,
            branch="main",
            changelog=None,
            source_build_id=None,
            config_snapshot={},
            required_labels=(),
            reason="test",
            now=clock.now(),
        )
    )
    assert build is not None
    steps = (BuildStatus.QUEUED, BuildStatus.ASSIGNED, BuildStatus.RUNNING, status)
    for current, target in itertools.pairwise(steps):
        clock.advance(1)
        await store.builds.transition(
            Transition(build.id, current, target, "test", "test", clock.now())
        )
    return build.id


async def _remote_sources(
    store: Store, runtime: Runtime, clock: FakeClock, scm: FakeScm
) -> tuple[str, str]:
    """A GitHub App integration and a GitLab one, one repository each; their ids."""
    box = runtime.identity.secrets
    assert box is not None
    now = clock.now()
    found = []
    for provider, auth, host, secret, external, name in (
        (
            IntegrationProvider.GITHUB,
            AuthMode.GITHUB_APP,
            scm.scm_config.github_web_url,
            {"pem": scm.key.as_pem(private=True).decode()},
            str(INSTALLATION_ID),
            GITHUB_NAME,
        ),
        (
            IntegrationProvider.GITLAB,
            AuthMode.PERSONAL_TOKEN,
            scm.base,
            {"access_token": GITLAB_TOKEN},
            "55",
            "group/app",
        ),
    ):
        integration = await store.integrations.create(
            NewIntegration(
                provider=provider,
                auth_mode=auth,
                status=IntegrationStatus.ACTIVE,
                now=now,
                host_url=host,
                app_id=str(APP_ID) if provider is IntegrationProvider.GITHUB else None,
                credentials_enc=box.encrypt(json.dumps(secret)),
            )
        )
        installation = await store.integrations.add_installation(
            integration.id, external_id=external, account_name="acme", account_type=None, now=now
        )
        repo_id = "1001" if provider is IntegrationProvider.GITHUB else GITLAB_ID
        [repository] = await store.integrations.upsert_repositories(
            installation.id,
            [RemoteRepository(repo_id, name, "main", True, None)],
            host_url=host,
            now=now,
        )
        found.append(repository.id)
    return found[0], found[1]


@pytest.fixture
async def repos(
    api: Api,
    owner_token: str,
    repo: Path,
    fake_scm: FakeScm,
    store: Store,
    runtime: Runtime,
    clock: FakeClock,
) -> Repos:
    fake_scm.github_sources[GITHUB_NAME] = repo
    fake_scm.gitlab_sources[GITLAB_ID] = repo
    github, gitlab = await _remote_sources(store, runtime, clock, fake_scm)
    found = Repos(api, owner_token, repo, fake_scm)
    for kind, source in (
        ("local_git", {"local_repository_path": str(repo)}),
        ("github", {"repository_id": github}),
        ("gitlab", {"repository_id": gitlab}),
    ):
        reply = await api.post("/v1/projects", json={"name": kind, **source}, token=owner_token)
        assert reply.status == 201, reply.body
        found.projects[kind] = reply.body["project"]["id"]
        found.pipelines[kind] = await found.pipeline(kind)
    return found
