"""Checks a real answer against the OpenAPI document: status, media type and body schema."""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator

from tests.http.conftest import Reply

_PARAMETER = re.compile(r"\{[^}/]+\}")


class Conformance:
    """The document's operations, matched by method and concrete path."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._routes: list[tuple[re.Pattern[str], str]] = []
        # Literal paths first: /v1/runners/register before /v1/runners/{runner_id}.
        for template in sorted(document["paths"], key=lambda t: (t.count("{"), t)):
            parts = template.split("/")
            pattern = "/".join("[^/]+" if _PARAMETER.fullmatch(p) else re.escape(p) for p in parts)
            self._routes.append((re.compile(f"^{pattern}$"), template))

    def operation(self, method: str, path: str) -> dict[str, Any]:
        bare = path.split("?", 1)[0]
        for pattern, template in self._routes:
            operations = self.document["paths"][template]
            if pattern.match(bare) and method.lower() in operations:
                found: dict[str, Any] = operations[method.lower()]
                return found
        raise AssertionError(f"{method} {bare} is not in the document")

    def problems(self, method: str, path: str, reply: Reply) -> list[str]:
        """What is wrong with ``reply`` as an answer to ``method path`` (nothing: [])."""
        answers = self.operation(method, path)["responses"]
        answer = answers.get(str(reply.status))
        if answer is None:
            return [f"{method} {path}: status {reply.status} is not documented ({reply.body})"]
        media = reply.headers.get("Content-Type", "").split(";")[0].strip()
        content = answer.get("content", {})
        if not content:
            return [] if not reply.body else [f"{method} {path}: a body where none is documented"]
        if media not in content:
            return [f"{method} {path}: {reply.status} as {media!r}, documented {list(content)}"]
        if media != "application/json":
            return []
        schema = {**content[media]["schema"], "components": self.document["components"]}
        return [
            f"{method} {path} {reply.status}: {'/'.join(map(str, error.absolute_path))}: "
            f"{error.message}"
            for error in Draft202012Validator(schema).iter_errors(reply.body)
        ]

    def check(self, method: str, path: str, reply: Reply) -> Reply:
        problems = self.problems(method, path, reply)
        assert not problems, problems
        return reply
