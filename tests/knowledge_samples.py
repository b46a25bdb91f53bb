"""Documents for the knowledge tests and bench: Markdown, HTML, and PDFs made with pypdf (text pages,
and a "scanned" one whose page has no text layer)."""

from __future__ import annotations

import io

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

GUIDE_MD = """# Gatecord handbook

Welcome to the server handbook. It explains how the community works.

## Resetting your password

Open Settings, choose Account, then press Reset password. A reset link arrives by email within
five minutes; it expires after one hour.

## Moderation rules

Moderators remove spam and warn members who insult others. Three warnings mean a one-day mute.

## Events calendar

Game nights happen every Friday at 20:00 UTC in the voice lounge.
"""


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[list[str]], *, title: str | None = None) -> bytes:
    """A PDF whose pages show ``pages`` (lines of text, Helvetica), made with pypdf; a page given no
    lines has no text at all (as a scanned page has no text layer)."""
    writer = PdfWriter()
    font = DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
    })
    for lines in pages:
        page = writer.add_blank_page(width=612, height=792)
        ops = ["BT", "/F1 11 Tf", "14 TL", "50 740 Td"]
        for line in lines:
            ops.append(f"({_escape(line)}) Tj T*")
        ops.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page.replace_contents(stream)  # type: ignore[arg-type]  # pypdf makes it an indirect object
        page[NameObject("/Resources")] = DictionaryObject({
            NameObject("/Font"): DictionaryObject({NameObject("/F1"): font}),
        })
    if title:
        writer.add_metadata({"/Title": title})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
