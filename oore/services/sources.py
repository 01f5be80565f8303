"""Reading a project's source repository at a commit, whatever its kind: a local git
repository with ``git``, GitHub and GitLab through their REST APIs (the one SCM client).

Each kind answers the same questions: which commit a ref names, which files a commit has,
a file's bytes, and the commits one commit has that another lacks. Provider failures are
the codes build creation uses: 400 ``invalid_ref``, 502 ``github_api_error`` /
``gitlab_api_error``, 500 ``git_error``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from oore.domain.integrations import Integration
from oore.domain.previews import CommitRange, FileAt, Listing
from oore.domain.projects import Project, RepositoryProvider
from oore.errors import Conflict, InvalidInput
from oore.services import git
from oore.services.integrations import Integrations
from oore.services.scm import GitLabCredential, ScmSession
from oore.store import Store

T = TypeVar("T")


def unknown_ref(ref: str) -> InvalidInput:
    return InvalidInput("invalid_ref", f"Ref {ref!r} does not exist in the repository")


class SourceReader(Protocol):
    async def resolve(self, ref: str, *, branch: bool = False) -> str:
        """The full SHA of the commit ``ref`` names (a branch name when ``branch``);
        400 ``invalid_ref`` when there is none."""
        ...

    async def listing(self, commit: str, path: str | None, limit: int) -> Listing:
        """The regular files at or under ``path`` at ``commit``: more may be listed, and a
        ``path`` naming a file may be missing (then it is read with :meth:`file`)."""
        ...

    async def file(self, commit: str, path: str, limit: int) -> FileAt | None:
        """A file at ``commit``; None when it is not a regular file there."""
        ...

    async def commits(self, base: str, target: str, limit: int) -> CommitRange | None:
        """What ``git log base..target`` lists, newest first; None when an end is unknown."""
        ...


class LocalGitSource:
    def __init__(self, path: str) -> None:
        self._path = path

    async def resolve(self, ref: str, *, branch: bool = False) -> str:
        return await git.resolve_commit(self._path, f"refs/heads/{ref}" if branch else ref)

    async def listing(self, commit: str, path: str | None, limit: int) -> Listing:
        return await git.list_files(self._path, commit, path, limit)

    async def file(self, commit: str, path: str, limit: int) -> FileAt | None:
        return await git.file_at(self._path, commit, path, limit)

    async def commits(self, base: str, target: str, limit: int) -> CommitRange | None:
        return await git.commit_range(self._path, base, target, limit)


class GitHubSource:
    """A repository of a GitHub App installation, read with an installation token."""

    def __init__(
        self,
        integrations: Integrations,
        integration: Integration,
        installation_id: str,
        full_name: str,
    ) -> None:
        self._integrations = integrations
        self._integration = integration
        self._installation_id = installation_id
        self._full_name = full_name
        self._token: str | None = None

    async def _call(self, call: Callable[[ScmSession, str], Awaitable[T]]) -> T:
        async def presented() -> T:
            if self._token is None:
                self._token = await self._integrations.github_token(
                    self._integration, self._installation_id
                )
            async with self._integrations.scm.session() as scm:
                return await call(scm, self._token)

        return await self._integrations.watched(self._integration, presented)

    async def resolve(self, ref: str, *, branch: bool = False) -> str:
        found = await self._call(lambda scm, token: scm.github_commit(token, self._full_name, ref))
        if found is None:
            raise unknown_ref(ref)
        return found

    async def listing(self, commit: str, path: str | None, limit: int) -> Listing:
        return await self._call(
            lambda scm, token: scm.github_tree(token, self._full_name, commit, limit)
        )

    async def file(self, commit: str, path: str, limit: int) -> FileAt | None:
        return await self._call(
            lambda scm, token: scm.github_file(token, self._full_name, commit, path, limit)
        )

    async def commits(self, base: str, target: str, limit: int) -> CommitRange | None:
        return await self._call(
            lambda scm, token: scm.github_compare(token, self._full_name, base, target, limit)
        )


class GitLabSource:
    """A GitLab project, read with the integration's token; ``project`` is its id."""

    def __init__(self, integrations: Integrations, integration: Integration, project: str) -> None:
        self._integrations = integrations
        self._integration = integration
        self._project = project

    async def _call(self, call: Callable[[ScmSession, str, GitLabCredential], Awaitable[T]]) -> T:
        async def presented() -> T:
            host, credential = await self._integrations.gitlab_credential(self._integration)
            async with self._integrations.scm.session() as scm:
                return await call(scm, host, credential)

        return await self._integrations.watched(self._integration, presented)

    async def resolve(self, ref: str, *, branch: bool = False) -> str:
        found = await self._call(
            lambda scm, host, cred: scm.gitlab_commit(host, cred, self._project, ref)
        )
        if found is None:
            raise unknown_ref(ref)
        return found

    async def listing(self, commit: str, path: str | None, limit: int) -> Listing:
        return await self._call(
            lambda scm, host, cred: scm.gitlab_tree(host, cred, self._project, commit, path, limit)
        )

    async def file(self, commit: str, path: str, limit: int) -> FileAt | None:
        return await self._call(
            lambda scm, host, cred: scm.gitlab_file(host, cred, self._project, commit, path, limit)
        )

    async def commits(self, base: str, target: str, limit: int) -> CommitRange | None:
        return await self._call(
            lambda scm, host, cred: scm.gitlab_compare(
                host, cred, self._project, base, target, limit
            )
        )


class Sources:
    """Opens the reader of a project's repository."""

    def __init__(self, store: Store, integrations: Integrations) -> None:
        self._store = store
        self._integrations = integrations

    async def reader(self, project: Project) -> SourceReader:
        """409 ``source_not_configured`` without a repository, ``source_unresolvable`` when
        the repository cannot be reached from here."""
        repository = project.repository
        if repository is None:
            raise Conflict("source_not_configured", "The project has no source repository")
        if repository.provider is RepositoryProvider.LOCAL_GIT:
            if not repository.local_path:
                raise unresolvable()
            return LocalGitSource(repository.local_path)
        owner = await self._store.integrations.repository(repository.id)
        if owner is None:
            raise unresolvable()
        if repository.provider is RepositoryProvider.GITHUB:
            return GitHubSource(
                self._integrations,
                owner.integration,
                owner.repository.installation_id,
                owner.repository.full_name,
            )
        return GitLabSource(self._integrations, owner.integration, owner.repository.external_id)


def unresolvable() -> Conflict:
    return Conflict("source_unresolvable", "The project's repository cannot be read from here")
