"""The default model of each kind on the gateway serving a request.

The operator's gateway keeps the ``[gateway]`` settings exactly as before (``chat_model``, ``speech_model``
…, each falling back to the profile's default where it always did). A guild's own gateway never uses
them (they name the operator's models): its admin's chat, vision and image models, else its profile's
defaults; speech, transcription, the voice, embeddings, video and music are its profile's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from bot.gateways.directory import is_guild_client

if TYPE_CHECKING:
    from bot.app.settings import Settings
    from gateway_client import GatewayClient

__all__ = ["ModelKindName", "default_model", "default_voice"]

ModelKindName = Literal["chat", "vision", "image", "speech", "transcription", "embedding", "video", "music"]


def _profile_default(client: GatewayClient, kind: ModelKindName) -> str:
    """The profile's documented default ("" for vision: the vision feature picks one the gateway lists)."""
    p = client.profile
    return {
        "chat": p.default_chat_model, "image": p.images.default_model if p.images is not None else "",
        "speech": p.default_speech_model, "transcription": p.default_transcription_model,
        "embedding": p.default_embedding_model, "video": p.default_video_model, "music": p.default_music_model,
    }.get(kind, "")


#: the kinds whose ``[gateway]`` setting is used as it is on the operator's gateway ("" = none chosen)
_AS_CONFIGURED = ("chat", "vision", "image")


def default_model(client: GatewayClient, kind: ModelKindName, settings: Settings) -> str:
    """The model ``kind`` requests use on ``client`` when nobody chose one ("" = none known: the gateway's
    own default, or for vision whichever listed model sees images)."""
    if is_guild_client(client):
        config = client.config
        own = {"chat": config.chat_model, "vision": config.vision_model, "image": config.image_model}.get(kind, "")
        return own or _profile_default(client, kind)
    g = settings.gateway
    configured = {"chat": g.chat_model, "vision": g.vision_model, "image": g.image_model,
                  "speech": g.speech_model, "transcription": g.transcription_model,
                  "embedding": g.embedding_model, "video": g.video_model, "music": g.music_model}[kind]
    return configured if kind in _AS_CONFIGURED else configured or _profile_default(client, kind)


def default_voice(client: GatewayClient, settings: Settings) -> str:
    """The voice speech uses on ``client``: ``[gateway] voice`` on the operator's, else the profile's."""
    profile = client.profile
    own = "" if is_guild_client(client) else settings.gateway.voice
    return own or profile.default_voice or (profile.voices[0] if profile.voices else "")
