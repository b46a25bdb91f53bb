"""Image edits (OpenAI ``POST images/edits``, multipart): the request, its validation (pure, before any
call) and the form. The answer has the shape of an image generation's and is read by the same code."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import aiohttp

from .config import GatewayConfig
from .errors import InvalidRequest, Unsupported
from .images import image_size
from .models import sniff_image_mime
from .profiles import Profile, _by_model

__all__ = ["ImageEditRequest", "default_edit_model", "edit_form", "validate_image_edit_request"]


@dataclass(frozen=True, slots=True)
class ImageEditRequest:
    """Edit ``image`` (PNG) as ``prompt`` says; where ``mask`` (PNG, same size) is transparent only."""

    prompt: str
    image: bytes = field(repr=False)
    mask: bytes | None = field(default=None, repr=False)
    model: str | None = None
    n: int = 1
    size: str | None = None


def _edit_model_ok(profile: Profile, model: str) -> bool:
    table = {m: True for m in profile.edit_models}
    return not table or _by_model(table, model, False)


def default_edit_model(profile: Profile, config: GatewayConfig | None) -> str:
    """The configured ``image_model`` when it can edit, else the profile's edit model ("" = the gateway's)."""
    configured = config.image_model if config else ""
    if configured and _edit_model_ok(profile, configured):
        return configured
    return profile.default_edit_model


def validate_image_edit_request(profile: Profile, config: GatewayConfig | None,
                                req: ImageEditRequest) -> ImageEditRequest:
    """``req`` with the model filled in, or ``InvalidRequest(field, allowed)`` / ``Unsupported``. Pure."""
    rules = profile.images
    if not profile.supports("image_edits") or rules is None:
        raise Unsupported(f"image editing is not offered by the {profile.name} gateway", profile=profile.name)
    if not isinstance(req.prompt, str) or not req.prompt.strip():
        raise InvalidRequest("the instruction is empty", field="prompt", allowed="non-empty text")
    model = req.model or default_edit_model(profile, config)
    if model and not _edit_model_ok(profile, model):
        raise InvalidRequest(f"{model} cannot edit images", field="model", allowed=list(profile.edit_models))
    limit = profile.max_edit_image_bytes
    dims = None
    for name, data in (("image", req.image), ("mask", req.mask)):
        if data is None:
            continue
        if sniff_image_mime(data) != "image/png":
            raise InvalidRequest(f"the {name} must be a PNG", field=name, allowed="PNG")
        if len(data) > limit:
            raise InvalidRequest(f"the {name} is larger than {limit} bytes", field=name, allowed=f"<= {limit} bytes")
        found = image_size(data)
        if found is None or not all(found):
            raise InvalidRequest(f"the {name} is not a readable PNG", field=name, allowed="PNG")
        if dims is not None and found != dims:
            raise InvalidRequest(f"the mask is {found[0]}x{found[1]}, the image {dims[0]}x{dims[1]}", field="mask",
                                 allowed=f"{dims[0]}x{dims[1]}")
        dims = found
    max_n = rules.max_n_for(model)
    if not isinstance(req.n, int) or isinstance(req.n, bool) or not 1 <= req.n <= max_n:
        raise InvalidRequest(f"n must be between 1 and {max_n} for {model or profile.name}", field="n",
                             allowed=list(range(1, max_n + 1)))
    size = req.size
    if size is not None:
        allowed = [s for s in rules.sizes_for(model) if s != "auto"] if model else []
        if allowed and size not in allowed:
            raise InvalidRequest(f"size {size} is not available for editing with {model}", field="size",
                                 allowed=allowed)
    return replace(req, model=model or None)


def edit_form(req: ImageEditRequest) -> aiohttp.FormData:
    """A fresh multipart body for an already validated request (a FormData is sent only once)."""
    form = aiohttp.FormData()
    form.add_field("image", req.image, filename="image.png", content_type="image/png")
    if req.mask is not None:
        form.add_field("mask", req.mask, filename="mask.png", content_type="image/png")
    form.add_field("prompt", req.prompt)
    if req.model:
        form.add_field("model", req.model)
    form.add_field("n", str(req.n))
    if req.size is not None:
        form.add_field("size", req.size)
    form.add_field("response_format", "b64_json")
    return form
