"""Embeddings, images and audio (filled in below)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .profiles import Profile

if TYPE_CHECKING:
    from .app import Handler


def routes(profile: Profile) -> list[tuple[str, str, "Handler"]]:
    return []
