"""Knowledge ingestion without the store: chunking (headings, paragraphs, overlap, sizes), extraction
(txt, md, html, pdf; scanned, empty, binary, unknown and password-protected files refused with their
sentence), the [knowledge] settings, and the emulators' embeddings (similar texts close)."""

from __future__ import annotations

import io
import math
import re

import pytest
from pydantic import ValidationError
from pypdf import PdfReader, PdfWriter

from bot.app.settings import Settings
from bot.knowledge.chunking import Chunk, chunk_text, embedding_input
from bot.knowledge.errors import EmptyDocument, ScannedPdf, UnreadableDocument, UnsupportedDocument
from bot.knowledge.extract import document_kind, extract, extract_async
from sandbox.gateways.answers import embedding
from tests.knowledge_samples import GUIDE_MD, make_pdf

# -- chunking ---------------------------------------------------------------------------------------


def test_sections_keep_their_heading_path_and_fenced_hashes_are_not_headings() -> None:
    text = GUIDE_MD + "\n### Fridays\n\n```\n# not a heading\n```\n\nBring snacks.\n"
    chunks = chunk_text(text, chunk_chars=400, overlap_chars=50)
    assert [c.heading for c in chunks] == [
        "Gatecord handbook", "Gatecord handbook › Resetting your password", "Gatecord handbook › Moderation rules",
        "Gatecord handbook › Events calendar", "Gatecord handbook › Events calendar › Fridays",
    ]
    assert chunks[1].text.startswith("Open Settings, choose Account") and "expires after one hour." in chunks[1].text
    assert "# not a heading" in chunks[-1].text and chunks[-1].text.endswith("Bring snacks.")
    assert embedding_input(chunks[1]).startswith("Gatecord handbook › Resetting your password\n\nOpen Settings")
    assert embedding_input(Chunk("plain")) == "plain"


def test_long_sections_are_cut_at_paragraphs_then_sentences_with_overlap() -> None:
    paragraphs = [" ".join(f"Sentence {p}.{i} tells one fact about backups." for i in range(12)) for p in range(4)]
    text = "## Backups\n\n" + "\n\n".join(paragraphs)
    chunks = chunk_text(text, chunk_chars=300, overlap_chars=60)
    assert len(chunks) > 8 and all(c.heading == "Backups" for c in chunks)
    assert all(len(c.text) <= 300 for c in chunks)
    # every sentence is whole in some chunk, and in order
    for p in range(4):
        for i in range(12):
            assert any(f"Sentence {p}.{i} tells one fact about backups." in c.text for c in chunks), (p, i)
    # each chunk after the first starts with the end of the one before (cut at a word)
    for before, after in zip(chunks, chunks[1:]):
        head = after.text.split(" Sentence")[0] if not after.text.startswith("Sentence") else ""
        assert head == "" or before.text.endswith(head)
        assert len(head) <= 60
    assert any(not c.text.startswith("Sentence") for c in chunks[1:]), "overlap carried into later chunks"


def test_a_word_longer_than_a_chunk_is_cut_and_blank_text_makes_nothing() -> None:
    chunks = chunk_text("x" * 1000, chunk_chars=300, overlap_chars=0)
    assert [len(c.text) for c in chunks] == [300, 300, 300, 100]
    assert chunk_text("\n\n   \n# Title only\n", chunk_chars=300, overlap_chars=10) == []
    with pytest.raises(ValueError):
        chunk_text("x", chunk_chars=300, overlap_chars=150)


def test_knowledge_settings_are_validated() -> None:
    k = Settings().knowledge
    assert (k.chunk_chars, k.overlap_chars, k.search_limit) == (1200, 150, 5)
    assert k.min_score < k.answer_min_score
    with pytest.raises(ValidationError, match="less than half of chunk_chars"):
        Settings(knowledge={"chunk_chars": 400, "overlap_chars": 200})
    assert Settings(gateway={"embedding_model": "emb"}).gateway.embedding_model == "emb"


# -- extraction -------------------------------------------------------------------------------------


def test_markdown_and_text() -> None:
    md = extract("handbook.md", GUIDE_MD.encode())
    assert (md.kind, md.title) == ("markdown", "Gatecord handbook") and "## Moderation rules" in md.text
    txt = extract("release_notes.txt", "\ufeffLine one\r\nLine two\r\n\r\n\r\n\r\nLast".encode())
    assert (txt.kind, txt.title, txt.text) == ("text", "release notes", "Line one\nLine two\n\nLast")
    assert extract("old.txt", "caf\xe9".encode("cp1252")).text == "café"  # not UTF-8: Windows-1252
    assert extract("u16.txt", "hello there".encode("utf-16")).text == "hello there"
    assert document_kind("notes", "text/markdown; charset=utf-8") == "markdown"


def test_html_keeps_visible_text_headings_and_lists() -> None:
    html = b"""<!doctype html><html><head><title>FAQ page</title><style>h1 {color: red}</style>
    <script>var secret = "do not index";</script></head><body><nav>Home</nav>
    <h1>Frequently asked</h1><p>Answers to   common
    questions.</p><h2>Refunds</h2><ul><li>Ask within 14 days</li><li>Keep the receipt</li></ul>
    <table><tr><th>Plan</th><td>Price &amp; tax</td></tr></table></body></html>"""
    doc = extract("faq.html", html)
    assert doc.title == "FAQ page" and doc.kind == "html"
    assert "secret" not in doc.text and "color" not in doc.text
    assert "# Frequently asked\n\nAnswers to common questions." in doc.text
    assert "## Refunds\n\n- Ask within 14 days\n- Keep the receipt" in doc.text
    assert "Price & tax" in doc.text
    chunks = chunk_text(doc.text, chunk_chars=500, overlap_chars=50)
    assert [c.heading for c in chunks] == [None, "Frequently asked", "Frequently asked › Refunds"]


async def test_pdf_text_by_page_in_a_thread() -> None:
    data = make_pdf([["Backups run nightly at 02:00 UTC.", "They are kept for 30 days."],
                     ["Restores are requested in the support channel."]], title="Operations manual")
    doc = await extract_async("ops.pdf", data, "application/pdf")
    assert (doc.kind, doc.title, doc.pages) == ("pdf", "Operations manual", 2)
    assert re.sub(r"\s+", " ", doc.text) == ("# Page 1 Backups run nightly at 02:00 UTC. They are kept for 30 days. "
                                             "# Page 2 Restores are requested in the support channel.")
    chunks = chunk_text(doc.text, chunk_chars=400, overlap_chars=40)
    assert [c.heading for c in chunks] == ["Page 1", "Page 2"]
    assert extract("untitled.pdf", make_pdf([["Some words on a page here."]])).title == "untitled"


def test_refusals_name_the_problem() -> None:
    with pytest.raises(ScannedPdf) as scanned:
        extract("scan.pdf", make_pdf([[], []]))
    assert "look scanned" in scanned.value.user_message() and "2 page(s)" in scanned.value.user_message()
    with pytest.raises(UnsupportedDocument) as unknown:
        extract("slides.pptx", b"PK\x03\x04")
    assert unknown.value.user_message() == ("I can't add `slides.pptx` to the knowledge base: I read .txt, .md, "
                                            ".html and .pdf files (this one is .pptx).")
    with pytest.raises(UnreadableDocument, match="not a readable PDF"):
        extract("broken.pdf", b"%PDF-1.4\nthis is not really a pdf")
    with pytest.raises(UnreadableDocument, match="binary data"):
        extract("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(EmptyDocument):
        extract("blank.md", b"\n\n  \n")
    locked = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([["Secret plans for the party."]]))))
    locked.encrypt("hunter2")
    out = io.BytesIO()
    locked.write(out)
    with pytest.raises(UnreadableDocument, match="password"):
        extract("locked.pdf", out.getvalue())


# -- the emulators' embeddings ----------------------------------------------------------------------


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("dims", [1536, 256])
def test_emulator_embeddings_put_similar_texts_close(dims: int) -> None:
    query = embedding("How do I reset my password?", dims)
    related = embedding("Resetting your password: open Settings and press Reset password.", dims)
    unrelated = embedding("Game nights happen every Friday in the voice lounge.", dims)
    assert cosine(query, related) > 0.4 > 0.1 > cosine(query, unrelated)
    assert embedding("installing", dims) == embedding("installs", dims)  # simple stemming
    assert math.isclose(sum(v * v for v in query), 1.0, abs_tol=1e-3)
    assert embedding("?!", dims) == embedding("?!", dims) != embedding("…", dims)  # no words: still a unit vector
