"""The knowledge base's refusals: each a sentence for whoever caused it, raised before anything is charged."""

from __future__ import annotations

from bot.rendering.user_facing import UserFacingError

__all__ = [
    "DocumentDownloadFailed",
    "DocumentNotFromDiscord",
    "DocumentTooLarge",
    "DocumentTooLong",
    "EmptyDocument",
    "KnowledgeUnavailable",
    "NoKnowledgeQuery",
    "ScannedPdf",
    "UnreadableDocument",
    "UnsupportedDocument",
    "describe_size",
]


def describe_size(size: int) -> str:
    """``5 MiB``, ``812 KiB``, ``300 bytes``."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MiB".replace(".0 ", " ")
    if size >= 1024:
        return f"{size / 1024:.1f} KiB".replace(".0 ", " ")
    return f"{size} bytes"


class KnowledgeUnavailable(UserFacingError):
    """No knowledge base here: a DM, or a gateway without embeddings (``reason`` says which)."""

    code = "knowledge_unavailable"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class UnsupportedDocument(UserFacingError):
    code = "document_unsupported"

    def __init__(self, filename: str, kind: str) -> None:
        self.filename = filename
        self.kind = kind
        super().__init__(f"{filename}: unsupported document type {kind}")

    def user_message(self) -> str:
        return (f"I can't add `{self.filename}` to the knowledge base: I read .txt, .md, .html and .pdf files "
                f"(this one is {self.kind}).")


class DocumentTooLarge(UserFacingError):
    code = "document_too_large"

    def __init__(self, filename: str, size: int | None, limit: int) -> None:
        self.filename = filename
        self.size = size
        self.limit = limit
        super().__init__(f"{filename}: {size if size is not None else 'over the limit'} bytes, limit {limit}")

    def user_message(self) -> str:
        size = f"is {describe_size(self.size)}" if self.size is not None else "is too large"
        return (f"`{self.filename}` {size}; the knowledge base takes files of at most "
                f"{describe_size(self.limit)}. Split it into smaller files.")


class DocumentTooLong(UserFacingError):
    """The document makes more chunks than ``[knowledge] max_document_chunks`` (its embedding cost)."""

    code = "document_too_long"

    def __init__(self, source: str, chunks: int, limit: int) -> None:
        self.source = source
        self.chunks = chunks
        self.limit = limit
        super().__init__(f"{source}: {chunks} chunks, limit {limit}")

    def user_message(self) -> str:
        return (f"`{self.source}` is too long for the knowledge base: it makes {self.chunks:,} chunks, and one "
                f"document may have at most {self.limit:,}. Split it into smaller documents.")


class EmptyDocument(UserFacingError):
    code = "document_empty"

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__(f"{source}: no text")

    def user_message(self) -> str:
        return f"`{self.source}` has no text to add to the knowledge base."


class ScannedPdf(UserFacingError):
    """A PDF without a text layer: its pages are pictures, and the bot does no OCR."""

    code = "document_scanned"

    def __init__(self, filename: str, pages: int) -> None:
        self.filename = filename
        self.pages = pages
        super().__init__(f"{filename}: {pages} page(s) without a text layer")

    def user_message(self) -> str:
        return (f"`{self.filename}` has no text I can read: its {self.pages} page(s) look scanned (pictures of "
                "text). Add a PDF with selectable text, or the text itself as a .txt or .md file.")


class UnreadableDocument(UserFacingError):
    code = "document_unreadable"

    def __init__(self, filename: str, why: str) -> None:
        self.filename = filename
        self.why = why
        super().__init__(f"{filename}: {why}")

    def user_message(self) -> str:
        return f"I can't read `{self.filename}`: {self.why}."


class DocumentNotFromDiscord(UserFacingError):
    code = "document_not_from_discord"

    def __init__(self, filename: str) -> None:
        self.filename = filename
        super().__init__(f"{filename} is not on Discord's CDN")

    def user_message(self) -> str:
        return f"`{self.filename}` is not stored on Discord's CDN, so I won't download it. Upload it to Discord."


class DocumentDownloadFailed(UserFacingError):
    code = "document_download_failed"

    def __init__(self, filename: str, detail: str) -> None:
        self.filename = filename
        self.detail = detail
        super().__init__(f"{filename}: download failed ({detail})")

    def user_message(self) -> str:
        return f"I couldn't download `{self.filename}` from Discord ({self.detail}). Try again."


class NoKnowledgeQuery(UserFacingError):
    code = "knowledge_query_empty"

    def user_message(self) -> str:
        return "Tell me what to search for."
