"""Pure rules of the previews: which files are pipeline files, how a parsed file is shown,
and how commits become a capped Markdown changelog."""

from __future__ import annotations

import pytest

from oore.domain.pipeline_config import parse_repository_yaml
from oore.domain.previews import (
    CHANGELOG_PREVIEW_CHARS,
    MAX_WORKFLOW_FILES,
    CommitSummary,
    Listing,
    TreeEntry,
    changelog_line,
    changelog_markdown,
    escape_markdown,
    more_changes,
    title_of,
    workflow_candidates,
    workflow_config_json,
)


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain words", "plain words"),
        ("*bold* _it_ `code`", "\\*bold\\* \\_it\\_ \\`code\\`"),
        ("[a](http://x) ![i](y)", "\\[a\\]\\(http://x\\) \\!\\[i\\]\\(y\\)"),
        (
            "# 1. - + > <b> | ~~s~~ &amp; \\",
            "\\# 1\\. \\- \\+ \\> \\<b\\> \\| \\~\\~s\\~\\~ \\&amp; \\\\",
        ),
        ("{curly}", "\\{curly\\}"),
        ("tab\there\x00nul\u202eflip", "tab here nul flip"),
        ("  padded  ", "padded"),
    ],
)
def test_markdown_escaping_leaves_literal_text_on_one_line(text: str, escaped: str) -> None:
    assert escape_markdown(text) == escaped


def test_a_title_is_the_first_line_of_the_message() -> None:
    assert title_of("\n  Subject line  \nsecond line\n\nbody") == "Subject line"
    assert title_of("") == ""


def commit(n: int, title: str = "", author: str = "Ada") -> CommitSummary:
    return CommitSummary(f"{n:040x}", title or f"change {n}", author)


def test_each_commit_is_one_line_with_its_author() -> None:
    assert changelog_line(commit(1, "Fix #2", "Bo_b")) == "- Fix \\#2 — Bo\\_b"
    assert changelog_line(CommitSummary("x", "", "")) == "- (no message) — unknown"
    commits = [commit(3), commit(2), commit(1)]
    assert changelog_markdown(commits, 3) == "- change 3 — Ada\n- change 2 — Ada\n- change 1 — Ada"
    assert changelog_markdown([], 0) == ""


def test_commits_not_read_are_counted_in_the_closing_line() -> None:
    assert changelog_markdown([commit(9)], 5) == "- change 9 — Ada\n…and 4 more changes"
    assert changelog_markdown([commit(9)], 2) == "- change 9 — Ada\n…and 1 more change"
    assert more_changes(1) == "…and 1 more change"


@pytest.mark.parametrize("title_chars", [10, 37, 38, 39, 120, 3890, 5000])
def test_the_cap_keeps_whole_lines_and_room_for_the_closing_line(title_chars: int) -> None:
    commits = [commit(n, "t" * title_chars + f" {n}") for n in range(400)]
    markdown = changelog_markdown(commits, 1000)
    lines = markdown.split("\n")
    assert len(markdown.encode()) <= CHANGELOG_PREVIEW_CHARS
    shown = lines[:-1]
    assert shown == [changelog_line(c) for c in commits[: len(shown)]]
    assert lines[-1] == more_changes(1000 - len(shown))
    # Not one more line would have fitted with its closing line.
    if len(shown) < len(commits):
        bigger = "\n".join([*shown, changelog_line(commits[len(shown)])])
        closing = more_changes(1000 - len(shown) - 1)
        assert len((bigger + "\n" + closing).encode()) > CHANGELOG_PREVIEW_CHARS


def test_the_cap_counts_bytes_so_the_preview_is_a_valid_changelog() -> None:
    commits = [commit(n, "修正" * 30) for n in range(200)]
    markdown = changelog_markdown(commits, 200)
    assert len(markdown.encode()) <= CHANGELOG_PREVIEW_CHARS < 4000
    assert markdown.endswith("more changes") and len(markdown) < 1500


def test_exactly_fitting_commits_need_no_closing_line() -> None:
    commits = [commit(n) for n in range(3)]
    exact = len("\n".join(changelog_line(c) for c in commits).encode())
    assert changelog_markdown(commits, 3, limit=exact).count("\n") == 2
    assert "more change" in changelog_markdown(commits, 3, limit=exact - 1)


def listing(*paths: str, size: int | None = 10) -> Listing:
    return Listing(tuple(TreeEntry(p, size) for p in paths))


def test_candidates_are_pipeline_files_and_named_ones_shallowest_first() -> None:
    found = listing(
        "src/app/.oore.yml",
        ".oore.yaml",
        "README.md",
        "ci/build.yaml",
        "ci/other.yaml",
        "a/.oore.yaml",
        "a/.oore.yaml.bak",
        "x.oore.yaml",
    )
    shown, more = workflow_candidates(found, None, ["ci/build.yaml", "ci/missing.yaml"])
    assert [e.path for e in shown] == [
        ".oore.yaml",
        "a/.oore.yaml",
        "ci/build.yaml",
        "src/app/.oore.yml",
    ]
    assert more is False
    under, _ = workflow_candidates(found, "src", ["ci/build.yaml"])
    assert [e.path for e in under] == ["src/app/.oore.yml"]
    single, _ = workflow_candidates(found, "README.md")
    assert [e.path for e in single] == ["README.md"]
    assert workflow_candidates(found, "s", []) == ([], False)  # a prefix is not a directory


def test_candidates_stop_at_16() -> None:
    found = listing(*(f"d{n:02d}/.oore.yaml" for n in range(MAX_WORKFLOW_FILES + 1)))
    shown, more = workflow_candidates(found, None)
    assert len(shown) == MAX_WORKFLOW_FILES and more is True
    assert shown[-1].path == f"d{MAX_WORKFLOW_FILES - 1:02d}/.oore.yaml"


def test_a_shown_config_hides_every_env_value() -> None:
    config, problems = parse_repository_yaml(
        """version: 1
timeout: 60
runner_labels: [gpu]
env:
  - {key: A, value: first-value, secret: true}
steps:
  - name: s
    run: echo
    timeout: 5
    continue_on_error: true
    env:
      - {key: B, value: second-value}
"""
    )
    assert config is not None, problems
    shown = workflow_config_json(config)
    assert shown["env"] == [{"key": "A", "value": "[REDACTED]", "secret": True}]
    assert shown["steps"] == [
        {
            "name": "s",
            "run": "echo",
            "env": [{"key": "B", "value": "[REDACTED]"}],
            "timeout": 5,
            "continue_on_error": True,
            "if": "success()",
        }
    ]
    assert (shown["timeout"], shown["runner_labels"]) == (60, ["gpu"])
    assert "first-value" not in str(shown) and "second-value" not in str(shown)
