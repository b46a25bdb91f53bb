"""Cutting a document's text into chunks to embed: on headings first, then paragraphs, with overlap.

The text is read as Markdown (plain text and the text extracted from HTML and PDF are written so):
a ``#`` heading (outside a code fence) starts a section, and every chunk keeps the heading path of
its section ("Install › Linux"), so a hit can say where it came from. A section's paragraphs are
packed into chunks of at most ``chunk_chars`` characters; a paragraph longer than that is cut at
sentence ends, then at spaces. Each chunk after the first of a section begins with the last
``overlap_chars`` characters of the previous one (cut at a word boundary), so a sentence that falls
across the cut is whole in one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.rendering.text import pack_parts, split_words

__all__ = ["Chunk", "chunk_text", "embedding_input", "HEADING_SEPARATOR"]

HEADING_SEPARATOR = " › "
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?…。])\s+")
#: the longest heading path kept with a chunk
MAX_HEADING_CHARS = 200


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a document: its text and the heading path of the section it is in (None: before any)."""

    text: str
    heading: str | None = None


@dataclass(slots=True)
class _Section:
    heading: str | None
    lines: list[str]


def embedding_input(chunk: Chunk) -> str:
    """What is embedded for a chunk: its heading path, then its text (the heading helps retrieval)."""
    return f"{chunk.heading}\n\n{chunk.text}" if chunk.heading else chunk.text


def chunk_text(text: str, *, chunk_chars: int, overlap_chars: int) -> list[Chunk]:
    """The chunks of ``text`` in order; empty sections make none (so a blank text makes no chunk)."""
    if chunk_chars < 20:
        raise ValueError("chunk_chars must be at least 20")
    if not 0 <= overlap_chars * 2 < chunk_chars:
        raise ValueError("overlap_chars must be at least 0 and less than half of chunk_chars")
    chunks: list[Chunk] = []
    for section in _sections(text):
        for piece in _pack(_paragraphs(section.lines), chunk_chars, overlap_chars):
            chunks.append(Chunk(piece, section.heading))
    return chunks


def _sections(text: str) -> list[_Section]:
    """The text split at its headings, each section with its heading path (levels nest)."""
    sections = [_Section(None, [])]
    path: list[tuple[int, str]] = []
    fenced = False
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match is None:
            sections[-1].lines.append(line)
            continue
        level, title = len(match.group(1)), _clean(match.group(2))
        path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
        heading = HEADING_SEPARATOR.join(t for _, t in path)
        if len(heading) > MAX_HEADING_CHARS:
            heading = "…" + heading[-(MAX_HEADING_CHARS - 1):]
        sections.append(_Section(heading, []))
    return sections


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _paragraphs(lines: list[str]) -> list[str]:
    """Paragraphs (blocks between blank lines), each with its inner spacing kept but trimmed."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines:
        if line.strip():
            current.append(line.rstrip())
        elif current:
            paragraphs.append("\n".join(current).strip("\n"))
            current = []
    if current:
        paragraphs.append("\n".join(current).strip("\n"))
    return [p for p in paragraphs if p.strip()]


def _pack(paragraphs: list[str], size: int, overlap: int) -> list[str]:
    """Paragraphs joined into chunks of at most ``size`` characters, each after the first starting with
    the previous chunk's tail (at most ``overlap`` characters)."""
    chunks: list[str] = []
    current = ""
    for unit in _units(paragraphs, size - overlap):
        if not current:
            current = unit
            continue
        joined = f"{current}\n\n{unit}"
        if len(joined) <= size:
            current = joined
            continue
        chunks.append(current)
        tail = _tail(current, overlap)
        current = f"{tail} {unit}" if tail and len(tail) + 1 + len(unit) <= size else unit
    if current:
        chunks.append(current)
    return chunks


def _units(paragraphs: list[str], room: int) -> list[str]:
    """Paragraphs no longer than ``room``: a longer one is cut at sentence ends (then at spaces, then
    anywhere), its pieces joined back up to ``room``."""
    units: list[str] = []
    for paragraph in paragraphs:
        if len(paragraph) <= room:
            units.append(paragraph)
            continue
        pieces = (piece for sentence in _SENTENCE_END.split(paragraph) for piece in split_words(sentence, room))
        units.extend(pack_parts(pieces, room))
    return units


def _tail(text: str, overlap: int) -> str:
    """The last ``overlap`` characters of ``text`` or fewer, starting at a word."""
    if overlap <= 0 or not text:
        return ""
    if len(text) <= overlap:
        return text.strip()
    cut = text[-overlap:]
    space = cut.find(" ")
    newline = cut.find("\n")
    starts = [i for i in (space, newline) if i >= 0]
    if starts and min(starts) < len(cut) - 1:
        cut = cut[min(starts) + 1:]
    return cut.strip()
