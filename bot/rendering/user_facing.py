"""The base of every refusal the member caused or can act on, each kind with its own stable code.

A ``UserFacingError`` words its own sentence (``user_message()``) and carries a short ``code`` that
ledgers, logs and metrics use (``busy``, ``budget_exceeded``, ``image_refused`` …). Anything else
that reaches the member is turned into a sentence by ``bot.rendering.errors``.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["UserFacingError"]


class UserFacingError(Exception):
    """A failure to show the member as is; subclasses set ``code`` and may override ``user_message``."""

    code: ClassVar[str] = "refused"

    def user_message(self) -> str:
        return str(self)
