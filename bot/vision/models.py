"""Which model answers an image question.

The wanted model (the ``model`` option, else the channel's model) is used when it can see images.
Otherwise the bot switches — to the channel's vision model, the configured ``gateway.vision_model``,
or the first model of the gateway's own vision list (DigiCord's ``/vision-models``, listing metadata
elsewhere) — and the footer says so. With no vision model anywhere, ``NoVisionModel`` explains how
an admin can set one up.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.rendering.user_facing import UserFacingError

log = logging.getLogger(__name__)

__all__ = ["NoVisionModel", "VisionChoice", "choose_vision_model", "vision_model_ids"]


def _code(name: str) -> str:
    return "`" + name.replace("`", "'").replace("@", "@\u200b").replace("\n", " ")[:80] + "`"


class NoVisionModel(UserFacingError):
    """The wanted model cannot see images and no vision model is configured or listed."""

    code = "no_vision_model"

    def __init__(self, wanted: str | None) -> None:
        super().__init__("no vision model")
        self.wanted = wanted

    def user_message(self) -> str:
        who = f"The model {_code(self.wanted)} can't see images" if self.wanted else "No model here can see images"
        return (f"{who}, and no vision model is configured for this bot. A server admin can choose one with "
                "`/config model kind:vision`, or whoever runs the bot can set `gateway.vision_model` in its "
                "configuration.")


@dataclass(frozen=True, slots=True)
class VisionChoice:
    model: str
    switched_from: str | None = None

    def footer_note(self) -> str | None:
        """The footer part that says the model was switched (None when it was not)."""
        if not self.switched_from:
            return None
        return f"switched from {_code(self.switched_from)} (it can't see images)"


async def vision_model_ids(gateway: Any, configured: str = "") -> list[str]:
    """Ids of models that accept images, in the gateway's order; ``configured`` when the list fails."""
    try:
        return [m.id for m in await gateway.vision_models()]
    except Exception as exc:  # the list is advisory: fall back to what the operator configured
        log.info("vision model list unavailable: %r", exc)
        return [configured] if configured else []


async def choose_vision_model(
    gateway: Any, *, wanted: str | None, preferred: Sequence[str] = (), configured: str = ""
) -> VisionChoice:
    """The model for an image question. ``preferred`` (the channel's vision model, then the configured
    one) is tried before the gateway's list; raises ``NoVisionModel`` when nothing can see images."""
    ids = await vision_model_ids(gateway, configured)
    if wanted and wanted in ids:
        return VisionChoice(wanted)
    for candidate in preferred:
        if candidate and candidate in ids:
            return VisionChoice(candidate, switched_from=wanted)
    if ids:
        return VisionChoice(ids[0], switched_from=wanted)
    raise NoVisionModel(wanted)
