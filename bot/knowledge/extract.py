"""The text of a document added to the knowledge base: plain text, Markdown, HTML or PDF.

What comes out is Markdown-like text (headings as ``#`` lines) that ``bot.knowledge.chunking`` cuts
up, and a title. HTML is read with the standard library's ``html.parser`` (scripts, styles and the
head left out; headings, paragraphs, list items and table rows kept as such); PDF with pypdf, one
``# Page N`` section per page so that a hit names its page. A PDF without a text layer (a scan) is
refused: there is nothing to embed without OCR. Parsing is CPU work: ``extract_async`` runs it in a
thread.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePosixPath

from bot.knowledge.errors import EmptyDocument, ScannedPdf, UnreadableDocument, UnsupportedDocument

__all__ = ["Extracted", "SUPPORTED_SUFFIXES", "document_kind", "extract", "extract_async"]

log = logging.getLogger(__name__)

#: file name ending -> kind
SUPPORTED_SUFFIXES: dict[str, str] = {
    ".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown",
    ".html": "html", ".htm": "html", ".pdf": "pdf",
}
#: content type -> kind, for a file whose name says nothing
_CONTENT_TYPES: dict[str, str] = {
    "text/plain": "text", "text/markdown": "markdown", "text/x-markdown": "markdown",
    "text/html": "html", "application/xhtml+xml": "html", "application/pdf": "pdf",
}
#: a PDF page with fewer letters or digits than this on average has no text layer worth the name
MIN_PDF_CHARS_PER_PAGE = 16
_TITLE_MAX = 200


@dataclass(frozen=True, slots=True)
class Extracted:
    """A document's text (Markdown-like), its title and its kind ("text" | "markdown" | "html" | "pdf")."""

    text: str
    title: str
    kind: str
    pages: int = 0


def document_kind(filename: str, content_type: str | None) -> str:
    """The kind of ``filename`` by its ending (else its content type); ``UnsupportedDocument`` when unknown."""
    suffix = PurePosixPath(filename.lower()).suffix
    if suffix in SUPPORTED_SUFFIXES:
        return SUPPORTED_SUFFIXES[suffix]
    ctype = (content_type or "").split(";")[0].strip().lower()
    if not suffix and ctype in _CONTENT_TYPES:
        return _CONTENT_TYPES[ctype]
    raise UnsupportedDocument(filename, suffix or ctype or "unknown")


def extract(filename: str, data: bytes, content_type: str | None = None) -> Extracted:
    """The text and title of one file. Raises ``UnsupportedDocument``, ``UnreadableDocument``,
    ``ScannedPdf`` or ``EmptyDocument`` (each with the sentence to show the member)."""
    kind = document_kind(filename, content_type)
    stem = _title_from_name(filename)
    if kind == "pdf":
        result = _pdf(filename, data, stem)
    else:
        text = _decode(filename, data)
        if kind == "html":
            parsed = _HtmlText.parse(text)
            result = Extracted(parsed.text, parsed.title or _first_heading(parsed.text) or stem, kind)
        else:
            text = _tidy(text)
            title = (_first_heading(text) if kind == "markdown" else None) or stem
            result = Extracted(text, title, kind)
    if not re.search(r"\w", result.text):
        raise EmptyDocument(filename)
    return Extracted(result.text, result.title[:_TITLE_MAX], result.kind, result.pages)


async def extract_async(filename: str, data: bytes, content_type: str | None = None) -> Extracted:
    """``extract`` in a worker thread (PDF and HTML parsing must not hold the event loop)."""
    return await asyncio.to_thread(extract, filename, data, content_type)


# -- text -------------------------------------------------------------------------------------------

def _decode(filename: str, data: bytes) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with a BOM; anything holding NUL bytes is not text."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise UnreadableDocument(filename, "it is not valid UTF-16 text") from None
    if b"\x00" in data:
        raise UnreadableDocument(filename, "it holds binary data, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # not UTF-8: Windows-1252 reads every byte (old Windows text files are the usual case)
        return data.decode("cp1252", errors="replace")


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    text = "".join(ch for ch in text if ch == "\n" or ch >= " " or ch == "\t")
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _title_from_name(filename: str) -> str:
    stem = PurePosixPath(filename).stem or filename
    return re.sub(r"[_\s]+", " ", stem).strip() or filename


def _first_heading(text: str) -> str | None:
    match = re.search(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", text, re.MULTILINE)
    return match.group(1).strip() if match else None


# -- HTML -------------------------------------------------------------------------------------------

_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "head", "iframe", "object"})
_BLOCKS = frozenset({
    "p", "div", "section", "article", "main", "header", "footer", "aside", "nav", "blockquote", "pre",
    "table", "tr", "ul", "ol", "dl", "dt", "dd", "figure", "figcaption", "form", "fieldset", "address", "hr",
})
_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source", "wbr"})


class _HtmlText(HTMLParser):
    """Visible text of an HTML page, headings as Markdown ``#`` lines, blocks as paragraphs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip: list[str] = []  # open elements whose text is not shown
        self._in_title = False
        self._pre = 0

    @classmethod
    def parse(cls, html: str) -> _HtmlText:
        parser = cls()
        parser.feed(html)
        parser.close()
        return parser

    @property
    def text(self) -> str:
        lines = [re.sub(r"[ \t]+", " ", line).strip() for line in "".join(self.parts).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in _SKIPPED and tag not in _VOID:
            self._skip.append(tag)
            return
        if self._skip:
            return
        if re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag == "br":
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" | ")
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
        if tag == "pre":
            self._pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if self._skip:
            if tag == self._skip[-1]:
                self._skip.pop()
            return
        if re.fullmatch(r"h[1-6]", tag) or tag in _BLOCKS:
            self.parts.append("\n\n")
        if tag == "pre" and self._pre:
            self._pre -= 1

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._skip:
            return
        if self._pre:
            self.parts.append(data)
        else:
            self.parts.append(re.sub(r"\s+", " ", data))

    def close(self) -> None:
        super().close()
        self.title = re.sub(r"\s+", " ", self.title).strip()


# -- PDF --------------------------------------------------------------------------------------------

def _pdf(filename: str, data: bytes, stem: str) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableDocument(filename, "it is protected by a password")
        pages = []
        for number, page in enumerate(reader.pages, start=1):
            text = _tidy(page.extract_text() or "")
            pages.append((number, text))
        title = ""
        meta = reader.metadata
        if meta is not None and meta.title:
            title = str(meta.title).strip()
    except UnreadableDocument:
        raise
    except FileNotDecryptedError:
        raise UnreadableDocument(filename, "it is protected by a password") from None
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        log.info("knowledge: %s is not a readable PDF (%s)", filename, type(exc).__name__)
        raise UnreadableDocument(filename, "it is not a readable PDF") from None
    if not pages:
        raise EmptyDocument(filename)
    letters = sum(len(re.findall(r"\w", text)) for _, text in pages)
    if letters < MIN_PDF_CHARS_PER_PAGE * len(pages):
        raise ScannedPdf(filename, len(pages))
    body = "\n\n".join(f"# Page {number}\n\n{text}" for number, text in pages if text)
    return Extracted(body, title or stem, "pdf", len(pages))
