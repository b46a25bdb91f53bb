"""Voice messages as Discord accepts them: flag IS_VOICE_MESSAGE (8192), nothing but one Ogg/Opus
attachment carrying ``duration_secs`` and a base64 ``waveform`` (at most 256 one-byte samples),
where the channel allows them and the bot has SEND_VOICE_MESSAGES. Also the metadata a member's
client computes for a recording (used by ``send_user_voice_message``). PyAV work runs in a thread."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import av
import numpy as np

from . import errors as E
from . import permissions as P
from .messages import UploadedFile, guess_content_type
from .models import FLAG_IS_VOICE_MESSAGE, Channel, MessageState

if TYPE_CHECKING:
    from .server import DiscordEmulator

WAVEFORM_MAX_BYTES = 256
WAVEFORM_BUCKETS_PER_SECOND = 10  # as Discord's clients sample a recording, capped at WAVEFORM_MAX_BYTES

ADDITIONAL_CONTENT = "Voice messages do not support additional content."
SINGLE_AUDIO_ATTACHMENT = "Voice messages must have a single audio attachment."
NEEDS_METADATA = "Voice messages must have supporting metadata."
CANNOT_EDIT = "Voice messages cannot be edited."
NOT_ALLOWED_IN_CHANNEL = "Cannot send voice messages in this channel."


def is_voice(body: dict[str, Any]) -> bool:
    """Whether a message body asks for a voice message (flags has 8192)."""
    flags = body.get("flags")
    return isinstance(flags, int) and not isinstance(flags, bool) and bool(flags & FLAG_IS_VOICE_MESSAGE)


def refuse_edit(msg: MessageState) -> None:
    """400 50162 for any edit of a voice message."""
    if msg.is_voice_message:
        raise E.APIError(400, E.VOICE_CANNOT_EDIT, CANNOT_EDIT)


async def check_voice_message(
    emu: "DiscordEmulator",
    channel: Channel,
    body: dict[str, Any],
    files: list[UploadedFile],
    *,
    bot_permissions: bool = True,
) -> None:
    """Refuse a voice-message body the way Discord does (no-op for other bodies).

    400 50159 additional content, 400 50160 not exactly one Ogg/Opus audio file, 400 50161 missing
    or malformed ``duration_secs``/``waveform``, 403 50173 the channel disallows voice messages,
    403 50013 the bot lacks SEND_VOICE_MESSAGES (``bot_permissions``; not for channel webhooks).
    """
    if not is_voice(body):
        return
    if body.get("content") or body.get("embeds") or body.get("components") or body.get("sticker_ids") or body.get("poll"):
        raise E.APIError(400, E.VOICE_ADDITIONAL_CONTENT, ADDITIONAL_CONTENT)
    if len(files) != 1 or not guess_content_type(files[0].filename, files[0].content_type).startswith("audio/"):
        raise E.APIError(400, E.VOICE_SINGLE_AUDIO_ATTACHMENT, SINGLE_AUDIO_ATTACHMENT)
    if not await asyncio.to_thread(is_ogg_opus, files[0].data):
        raise E.APIError(400, E.VOICE_SINGLE_AUDIO_ATTACHMENT, SINGLE_AUDIO_ATTACHMENT)
    entry = _attachment_entry(body, files[0])
    if entry is None or not _has_metadata(entry):
        raise E.APIError(400, E.VOICE_NEEDS_METADATA, NEEDS_METADATA)
    world = emu.world
    if not (channel.voice_messages and world.permission_channel(channel).voice_messages):
        raise E.APIError(403, E.VOICE_NOT_ALLOWED_IN_CHANNEL, NOT_ALLOWED_IN_CHANNEL)
    if bot_permissions and not world.permissions_for(emu.bot_user_id, channel.id) & P.SEND_VOICE_MESSAGES:
        raise E.APIError(403, E.MISSING_PERMISSIONS, "Missing Permissions")


def _attachment_entry(body: dict[str, Any], upload: UploadedFile) -> Optional[dict[str, Any]]:
    for entry in body.get("attachments") or []:
        if isinstance(entry, dict) and str(entry.get("id")) == str(upload.index):
            return entry
    return None


def _has_metadata(entry: dict[str, Any]) -> bool:
    duration = entry.get("duration_secs")
    waveform = entry.get("waveform")
    if not isinstance(duration, (int, float)) or isinstance(duration, bool) or not isinstance(waveform, str):
        return False
    try:
        samples = base64.b64decode(waveform, validate=True)
    except (binascii.Error, ValueError):
        return False
    return 0 < len(samples) <= WAVEFORM_MAX_BYTES


def is_ogg_opus(data: bytes) -> bool:
    """An Ogg file whose first audio stream is Opus and decodes (blocking: call in a thread)."""
    if not data.startswith(b"OggS"):
        return False
    try:
        with av.open(io.BytesIO(data), mode="r", format="ogg") as container:
            if not container.streams.audio:
                return False
            stream = container.streams.audio[0]
            if stream.codec_context.name != "opus":
                return False
            return next(container.decode(stream), None) is not None
    except (av.FFmpegError, ValueError):
        return False


@dataclass(frozen=True)
class VoiceMetadata:
    """What a client sends with a recording: its length and its waveform (base64)."""

    duration_secs: float
    waveform: str


def voice_metadata(data: bytes) -> VoiceMetadata:
    """Decode ``data`` (any audio FFmpeg reads) and compute its duration from the decoded samples and
    its waveform: the peak of each of at most 256 buckets, 0..255. Blocking: call in a thread.
    Raises ValueError when the bytes are not decodable audio."""
    chunks: list[np.ndarray[Any, Any]] = []
    rate = 0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise ValueError("no audio stream in the file")
            resampler = av.AudioResampler(format="flt", layout="mono")
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    rate = out.sample_rate
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        raise ValueError(f"not decodable audio: {exc}") from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if not rate or not samples.size:
        raise ValueError("the audio has no samples")
    duration = samples.size / rate
    buckets = max(1, min(WAVEFORM_MAX_BYTES, round(duration * WAVEFORM_BUCKETS_PER_SECOND), samples.size))
    peaks = np.array([np.abs(part).max() for part in np.array_split(samples, buckets)])
    levels = np.clip(np.rint(peaks * 255), 0, 255).astype(np.uint8)
    return VoiceMetadata(duration_secs=duration, waveform=base64.b64encode(levels.tobytes()).decode("ascii"))
