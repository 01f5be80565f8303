"""Names people type turned into the ids the API takes: projects and pipelines by name or
id, builds by id or ``PROJECT#NUMBER``, runners by name or id."""

from __future__ import annotations

import uuid
from typing import Any

from oore.client.api import Api, CliError


def is_id(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _one(kind: str, ref: str, found: list[dict[str, Any]], key: str = "name") -> dict[str, Any]:
    matches = [item for item in found if item.get(key) == ref]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CliError(f"no {kind} named {ref!r}")
    raise CliError(f"{len(matches)} {kind}s are named {ref!r}: give its id")


def project(api: Api, ref: str) -> dict[str, Any]:
    if is_id(ref):
        found: dict[str, Any] = api.get(f"/v1/projects/{ref}")["project"]
        return found
    return _one("project", ref, api.pages("/v1/projects", "projects", search=ref))


def pipeline(api: Api, project_id: str, ref: str | None) -> dict[str, Any]:
    pipelines = api.pages(f"/v1/projects/{project_id}/pipelines", "pipelines")
    if ref is None:
        if len(pipelines) == 1:
            only: dict[str, Any] = pipelines[0]
            return only
        names = ", ".join(sorted(str(p.get("name")) for p in pipelines)) or "none"
        raise CliError(
            f"the project has {len(pipelines)} pipelines ({names}): pick one with --pipeline"
        )
    if is_id(ref):
        for item in pipelines:
            if item.get("id") == ref:
                chosen: dict[str, Any] = item
                return chosen
    return _one("pipeline", ref, pipelines)


def build_id(api: Api, ref: str) -> str:
    """A build id as given, or the id of build NUMBER of PROJECT for ``PROJECT#NUMBER``."""
    if is_id(ref):
        return ref
    name, hash_sign, number = ref.rpartition("#")
    if not hash_sign or not number.isdigit() or not name:
        raise CliError(f"{ref!r} is not a build: give its id or PROJECT#NUMBER", exit_code=2)
    owner = project(api, name)
    offset = 0
    while True:
        page = api.get("/v1/builds", project_id=owner["id"], limit=100, offset=offset)
        for build in page.get("builds", []):
            if build.get("build_number") == int(number):
                return str(build["id"])
        offset += len(page.get("builds", []))
        if not page.get("builds") or offset >= int(page.get("total", 0)):
            raise CliError(f"project {name!r} has no build #{number}")


def runner(api: Api, ref: str) -> dict[str, Any]:
    if is_id(ref):
        found: dict[str, Any] = api.get(f"/v1/runners/{ref}")["runner"]
        return found
    return _one("runner", ref, api.pages("/v1/runners", "runners", q=ref))
