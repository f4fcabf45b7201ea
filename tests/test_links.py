"""Relative links and anchors in the project's Markdown resolve, offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_orch.spec_extract.links import check_links, markdown_files

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.req("OC-HARNESS-8505")
def test_project_markdown_links_resolve() -> None:
    files = markdown_files(ROOT)
    assert ROOT / "README.md" in files and ROOT / "specs" / "README.md" in files
    issues = check_links(files, ROOT)
    assert not issues, "\n".join(map(str, issues))


@pytest.mark.req("OC-HARNESS-8505")
def test_broken_file_and_anchor_are_reported(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(
        "# Title\n\n## 2. The `started` event\n\n"
        "[ok](#2-the-started-event) [ok2](b.md#intro) [web](https://example.invalid/x)\n"
        "[gone](missing.md) [bad](b.md#nope)\n"
        "```\n[in fence](ignored.md)\n```\n"
    )
    (tmp_path / "b.md").write_text("# Intro\n")
    issues = check_links([tmp_path / "a.md", tmp_path / "b.md"], tmp_path)
    assert [(i.line, i.reason) for i in issues] == [
        (6, "broken link 'missing.md': missing.md does not exist"),
        (6, "broken link 'b.md#nope': no heading with anchor #nope in b.md"),
    ]
