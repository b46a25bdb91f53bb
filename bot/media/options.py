"""/imagine options → a validated ``ImageRequest`` (before anything is reserved or charged).

The gateway client owns the per-profile rules (``validate_image_request``); this module adds the
command's own rule (count 1–4), fills defaults only where the profile accepts them (a FLUX seed and
steps, the largest count a model allows), and words refusals for the member: the option's name as
shown in Discord and its allowed values.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from bot.rendering.user_facing import UserFacingError
from gateway_client import ImageRequest, InvalidRequest

MAX_COUNT = 4
SEED_LIMIT = 2**32
#: the gateway's field names → the /imagine option names members see
OPTION_NAMES = {"n": "count", "prompt": "prompt", "model": "model", "steps": "steps", "seed": "seed",
                "width": "width", "height": "height", "size": "size", "negative_prompt": "negative_prompt"}


class Validator(Protocol):
    def validate_image_request(self, req: ImageRequest) -> ImageRequest: ...


@dataclass(frozen=True, slots=True)
class ImagineOptions:
    """What the member typed (None = not given)."""

    prompt: str
    model: str | None = None
    count: int | None = None
    steps: int | None = None
    seed: int | None = None
    size: str | None = None
    width: int | None = None
    height: int | None = None
    negative_prompt: str | None = None


class OptionError(UserFacingError):
    """A refused option: ``option`` as members know it, ``allowed`` values, the ``given`` value."""

    code = "invalid_option"

    def __init__(self, option: str, allowed: Any, given: Any = None, detail: str = "") -> None:
        super().__init__(f"{option}: {detail or 'not allowed'}")
        self.option = option
        self.allowed = allowed
        self.given = given
        self.detail = detail

    def user_message(self) -> str:
        given = f" `{_short(self.given)}`" if self.given is not None else ""
        allowed = format_allowed(self.allowed)
        if allowed:
            return f"The **{self.option}** option{given} is not allowed here. Allowed: {allowed}."
        return f"The **{self.option}** option is not supported by this server's image gateway; leave it out."


def format_allowed(allowed: Any) -> str:
    if allowed is None:
        return ""
    if isinstance(allowed, str):
        return allowed
    if isinstance(allowed, Sequence):
        items = [str(a) for a in allowed]
        if len(items) > 12:
            items = items[:12] + ["…"]
        return ", ".join(items)
    return str(allowed)


def _short(value: Any, limit: int = 60) -> str:
    text = str(value).replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def new_seed() -> int:
    return secrets.randbelow(SEED_LIMIT)


def build_request(
    gateway: Validator, opts: ImagineOptions, *, default_model: str | None, default_count: int, default_steps: int,
) -> ImageRequest:
    """Validate and normalise; raise ``OptionError`` for the first refused option.

    Defaults (count, steps, a random seed) are offered to the gateway's rules and quietly dropped or
    lowered when the profile does not take them; only options the member typed are refused.
    """
    if opts.count is not None and not 1 <= opts.count <= MAX_COUNT:
        raise OptionError("count", list(range(1, MAX_COUNT + 1)), opts.count)
    if opts.width is not None or opts.height is not None:
        if opts.size is not None:
            raise OptionError("size", "either size, or width and height — not both", opts.size)
    given = {
        "n": opts.count, "steps": opts.steps, "seed": opts.seed, "width": opts.width, "height": opts.height,
        "size": opts.size, "negative_prompt": opts.negative_prompt, "model": opts.model, "prompt": opts.prompt,
    }
    req = ImageRequest(
        prompt=opts.prompt,
        model=opts.model or default_model or None,
        n=opts.count if opts.count is not None else default_count,
        steps=opts.steps if opts.steps is not None else default_steps,
        seed=opts.seed if opts.seed is not None else new_seed(),
        width=opts.width,
        height=opts.height,
        size=opts.size,
        negative_prompt=opts.negative_prompt or None,
    )
    for _ in range(4):  # each round may drop/lower one default the profile does not take
        try:
            return gateway.validate_image_request(req)
        except InvalidRequest as exc:
            field = exc.field or "prompt"
            if given.get(field) is None:
                adjusted = _adjust_default(req, field, exc.allowed)
                if adjusted is not None:
                    req = adjusted
                    continue
            raise OptionError(OPTION_NAMES.get(field, field), exc.allowed, given.get(field), exc.message) from None
    return gateway.validate_image_request(req)


def _adjust_default(req: ImageRequest, field: str, allowed: Any) -> ImageRequest | None:
    if field == "seed":
        return replace(req, seed=None)
    if field == "steps":
        if isinstance(allowed, Sequence) and not isinstance(allowed, str) and allowed:
            return replace(req, steps=max(int(a) for a in allowed))
        return replace(req, steps=None)
    if field == "n" and isinstance(allowed, Sequence) and not isinstance(allowed, str) and allowed:
        return replace(req, n=max(int(a) for a in allowed))
    return None
