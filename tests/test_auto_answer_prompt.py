"""The auto-answer's prompt and sources line: excerpts numbered for the model, each document named once
(a message link as a link, a file by name), marked up so that a title can't break the markdown."""

from __future__ import annotations

from dataclasses import dataclass

from bot.auto_answer.prompt import MAX_SOURCES, grounded_prompt, sources_line
from bot.auto_answer.service import marked_text

LINK = "https://discord.com/channels/1/2/3"


@dataclass(frozen=True)
class Hit:
    source: str
    title: str
    text: str
    heading: str | None = None
    score: float = 0.9


def test_prompt_numbers_the_excerpts_then_gives_the_post() -> None:
    prompt = grounded_prompt("Refund window", "How long do I have?", [
        Hit("refunds.md", "Refunds", "Thirty days.", heading="Deadlines"), Hit(LINK, "Pinned rules", "Be kind.")])
    lines = prompt.splitlines()
    assert "[1] Refunds — Deadlines" in lines and "Thirty days." in lines and "[2] Pinned rules" in lines
    assert lines[-3:] == ["The post:", "Title: Refund window", "How long do I have?"]
    assert "Title:" not in grounded_prompt("", "Just text", [Hit("a.md", "A", "x")])


def test_sources_name_each_document_once_in_order() -> None:
    hits = [Hit("refunds.md", "Refunds", "a"), Hit(LINK, "Pinned [rules]", "b"), Hit("refunds.md", "Refunds", "c"),
            Hit("notes.txt", "notes.txt", "d")]
    assert sources_line(hits) == (
        f"📚 **Sources:** Refunds (`refunds.md`) · [Pinned (rules)](<{LINK}>) · `notes.txt`")
    many = [Hit(f"doc{i}.md", f"Doc {i}", "x") for i in range(MAX_SOURCES + 2)]
    assert sources_line(many).endswith("Doc 4 (`doc4.md`) and 2 more")


def test_marking_replaces_the_last_line_only() -> None:
    content = "📚 **Sources:** Refunds (`refunds.md`)\n-# Did this answer the question? The poster or a moderator can mark it."
    marked = marked_text(content, "solved", 42)
    assert marked == "📚 **Sources:** Refunds (`refunds.md`)\n-# ✅ Marked **solved** by <@42>."
    assert marked_text(marked, "not_helpful", 7).splitlines() == [
        "📚 **Sources:** Refunds (`refunds.md`)", "-# 👎 Marked **not helpful** by <@7>."]
