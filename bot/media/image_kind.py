"""The image kinds' runners: ``image`` (/imagine create: a generation) and ``edit`` (an image edited by
an instruction, /imagine edit and Edit image). Both are charged per image delivered, share the
``[imagine]`` queue and show their result as the /imagine grid with U/V/re-roll/delete.

An edit's input (the ``source`` image, and a ``mask`` where only part of it may change) is stored with
the job's row, so the call is made from what is stored: a re-roll or a retry uses the same source and
instruction again, V-n the same instruction on result n (the mask kept when it fits that image).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import discord
from PIL import Image

from bot.budgets.rules import Feature
from bot.media.buttons import result_view
from bot.media.jobs import FileToStore, JobParams, MediaJob, StoredFile
from bot.media.kinds import JobRun, KindContext, MediaRequest, Produced
from bot.media.options import ImagineOptions, OptionError, build_request, new_seed
from bot.media.render import render_progress
from bot.rendering.user_facing import UserFacingError
from gateway_client import CallMeta, GatewayError, ImageEditRequest, ImageRequest, ImageResult, InvalidRequest

if TYPE_CHECKING:
    from bot.media.progress import JobMessage

__all__ = ["EditRunner", "ImageRunner", "SourceGone"]

log = logging.getLogger(__name__)

DEFAULT_EXPECTED_SECONDS = 8.0
#: an edit makes one image unless the member asks for more
DEFAULT_EDIT_COUNT = 1
#: the gateway's field names → the option names members see
EDIT_OPTION_NAMES = {"n": "count", "prompt": "prompt", "model": "model", "size": "size", "image": "image",
                     "mask": "mask"}


class SourceGone(UserFacingError):
    code = "source_gone"

    def user_message(self) -> str:
        return "The image this edit started from is no longer stored; start a new edit."


class EditOptionsLike(Protocol):
    """What /imagine edit and the Edit image modal give (bot/media/edit_source.py ``EditOptions``)."""

    @property
    def prompt(self) -> str: ...
    @property
    def model(self) -> str | None: ...
    @property
    def count(self) -> int | None: ...
    @property
    def size(self) -> str | None: ...


class EditSourceLike(Protocol):
    """The validated input of an edit (bot/media/edit_source.py ``EditSource``): a PNG and its mask."""

    @property
    def image(self) -> FileToStore: ...
    @property
    def mask(self) -> FileToStore | None: ...


class _ImageKinds:
    """What generations and edits share: expected duration, the grid, the images charged."""

    kind: str
    feature = Feature.IMAGE
    icon = "🎨"
    what = "image"

    def __init__(self, ctx: KindContext) -> None:
        self.ctx = ctx
        self.gateway = ctx.gateway
        self.jobs = ctx.jobs
        self.presenter = ctx.presenter
        self.settings = ctx.settings.imagine
        self._clock = ctx.clock
        self._expected: dict[str, float] = {}

    def amounts(self, params: JobParams) -> dict[str, int]:
        return {"images": params.count}

    async def resume(self, run: JobRun) -> Produced:
        raise RuntimeError(f"{self.kind} jobs are never submitted, so never resumed")

    async def cancel(self, job: MediaJob) -> tuple[dict[str, int], CallMeta] | None:
        """Nothing to stop at the gateway (one call; the service stops the local task): nothing billed."""
        return None

    def progress_text(self, run: JobRun, *, elapsed: float, position: int) -> str:
        p = run.job.params
        return render_progress(prompt=p.prompt, model=p.model or "default", count=p.count, elapsed=elapsed,
                               expected=self._expected.get(p.model or "", DEFAULT_EXPECTED_SECONDS),
                               queue_position=position, job_id=run.job.id, icon=self.icon, what=self.what)

    async def present(self, message: JobMessage, job: MediaJob, files: list[tuple[StoredFile, bytes]],
                      upload: int, *, elapsed: float, link: tuple[str, float] | None = None) -> None:
        await self.presenter.show_result(message, job, files, upload, elapsed=elapsed)

    def buttons(self, job: MediaJob, *, running: bool) -> discord.ui.View:
        """Nothing while it runs (one short call); U/V/re-roll/delete under the grid."""
        return discord.ui.View(timeout=None) if running else result_view(job.id, job.params.count)

    def _finish(self, result: ImageResult, *, model: str | None, seed: int | None, began: float) -> Produced:
        self._learn(model, self._clock() - began)
        if not result.images:
            raise GatewayError("the gateway returned no images")
        single = len(result.images) == 1
        files = [
            FileToStore(img.data, img.mime, img.width, img.height,
                        img.seed if img.seed is not None else (seed if single else None))
            for img in result.images
        ]
        return Produced(files=files, meta=result.meta, amounts={"images": len(files)},
                        model_used=result.meta.model_used or model, request_id=result.meta.request_id)

    def _learn(self, model: str | None, seconds: float) -> None:
        key = model or ""
        old = self._expected.get(key)
        self._expected[key] = seconds if old is None else 0.7 * old + 0.3 * seconds


class ImageRunner(_ImageKinds):
    """/imagine create: images from a prompt."""

    kind = "image"

    def build(self, opts: ImagineOptions, *, default_model: str | None) -> MediaRequest:
        request = build_request(self.gateway, opts, default_model=default_model,
                                default_count=self.settings.default_count, default_steps=self.settings.default_steps)
        return self._request(request)

    async def again(self, job: MediaJob, action: str, index: int | None) -> MediaRequest:
        """V-n, re-roll or retry: the stored parameters (a new seed for a variation or re-roll)."""
        p = job.params
        seed = new_seed() if action in ("v", "reroll") and p.seed is not None else p.seed
        request = ImageRequest(prompt=p.prompt, model=p.model, n=p.count, width=p.width, height=p.height,
                               size=p.size, steps=p.steps, seed=seed, negative_prompt=p.negative_prompt)
        return self._request(self.gateway.validate_image_request(request))

    @staticmethod
    def _request(request: ImageRequest) -> MediaRequest:
        params = JobParams(
            prompt=request.prompt, model=request.model, count=request.n, width=request.width,
            height=request.height, size=request.size, steps=request.steps, seed=request.seed,
            negative_prompt=request.negative_prompt,
        )
        return MediaRequest(kind="image", params=params, gateway_request=request)

    async def produce(self, run: JobRun) -> Produced:
        if run.request is not None and isinstance(run.request.gateway_request, ImageRequest):
            request = run.request.gateway_request
        else:
            p = run.job.params
            request = ImageRequest(prompt=p.prompt, model=p.model, n=p.count, width=p.width, height=p.height,
                                   size=p.size, steps=p.steps, seed=p.seed, negative_prompt=p.negative_prompt)
        began = self._clock()
        result = await self.gateway.generate_images(request)
        return self._finish(result, model=request.model, seed=request.seed, began=began)


class EditRunner(_ImageKinds):
    """An image changed by an instruction (OpenAI's images/edits), from the job's stored source."""

    kind = "edit"
    icon = "✏️"
    what = "edited image"

    def build_edit(self, opts: EditOptionsLike, source: EditSourceLike, *,
                   default_model: str | None) -> MediaRequest:
        if opts.count is not None and not 1 <= opts.count <= 4:
            raise OptionError("count", [1, 2, 3, 4], opts.count)
        sources = [("source", source.image)] + ([("mask", source.mask)] if source.mask is not None else [])
        request = ImageEditRequest(prompt=opts.prompt, image=source.image.data,
                                   mask=source.mask.data if source.mask is not None else None,
                                   model=opts.model or default_model or None,
                                   n=opts.count if opts.count is not None else DEFAULT_EDIT_COUNT, size=opts.size)
        given = {"n": opts.count, "size": opts.size, "model": opts.model, "prompt": opts.prompt}
        if not opts.model and request.model:
            try:
                self.gateway.validate_image_edit_request(request)
            except InvalidRequest as exc:
                if exc.field == "model":  # the server's image model cannot edit: the gateway's edit model instead
                    request = replace(request, model=None)
        return self._validated(request, sources, given)

    async def again(self, job: MediaJob, action: str, index: int | None) -> MediaRequest:
        """Re-roll and retry: the same source and instruction; V-n: the instruction on result n."""
        stored = await self.jobs.read_sources(job.id)
        if "source" not in stored:
            raise SourceGone()
        source = _to_store(*stored["source"])
        mask = _to_store(*stored["mask"]) if "mask" in stored else None
        if action == "v" and index is not None:
            found = await self.jobs.read_image(job.id, index)
            if found is None:
                raise SourceGone()
            source = await asyncio.to_thread(_as_png, *found)
            if mask is not None and (mask.width, mask.height) != (source.width, source.height):
                mask = None  # the mask was drawn for another size; the whole image may change
        p = job.params
        request = ImageEditRequest(prompt=p.prompt, image=source.data, mask=mask.data if mask else None,
                                   model=p.model, n=p.count, size=p.size)
        sources = [("source", source)] + ([("mask", mask)] if mask is not None else [])
        return self._validated(request, sources, {})

    def _validated(self, request: ImageEditRequest, sources: list[tuple[str, FileToStore]],
                   given: Mapping[str, object]) -> MediaRequest:
        try:
            request = self.gateway.validate_image_edit_request(request)
        except InvalidRequest as exc:
            field = exc.field or "prompt"
            raise OptionError(EDIT_OPTION_NAMES.get(field, field), exc.allowed, given.get(field),
                              exc.message) from None
        params = JobParams(prompt=request.prompt, model=request.model, count=request.n, size=request.size)
        return MediaRequest(kind="edit", params=params, gateway_request=request, sources=sources)

    async def produce(self, run: JobRun) -> Produced:
        """The call made with the job's stored source and mask (what a retry after a restart has too)."""
        stored = await self.jobs.read_sources(run.job.id)
        if "source" not in stored:
            raise SourceGone()
        p = run.job.params
        request = ImageEditRequest(prompt=p.prompt, image=stored["source"][1],
                                   mask=stored["mask"][1] if "mask" in stored else None,
                                   model=p.model, n=p.count, size=p.size)
        if run.request is not None and isinstance(run.request.gateway_request, ImageEditRequest):
            request = replace(run.request.gateway_request, image=request.image, mask=request.mask)
        began = self._clock()
        result = await self.gateway.edit_images(request)
        return self._finish(result, model=request.model, seed=None, began=began)


def _to_store(stored: StoredFile, data: bytes) -> FileToStore:
    return FileToStore(data, stored.mime, stored.width, stored.height)


def _as_png(stored: StoredFile, data: bytes) -> FileToStore:
    """A result as an edit's source (edits take PNG): as is when it is one, else converted."""
    if stored.mime == "image/png" and stored.width and stored.height:
        return FileToStore(data, "image/png", stored.width, stored.height)
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        out = io.BytesIO()
        converted = img.convert("RGBA")
        converted.save(out, format="PNG")
        return FileToStore(out.getvalue(), "image/png", converted.width, converted.height)
