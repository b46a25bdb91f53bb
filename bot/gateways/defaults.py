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
    profile = client.profile
    if kind == "chat":
        return profile.default_chat_model
    if kind == "image":
        return profile.images.default_model if profile.images is not None else ""
    if kind == "speech":
        return profile.default_speech_model
    if kind == "transcription":
        return profile.default_transcription_model
    if kind == "embedding":
        return profile.default_embedding_model
    if kind == "video":
        return profile.default_video_model
    if kind == "music":
        return profile.default_music_model
    return ""  # vision: none documented; the vision feature picks one the gateway lists


def default_model(client: GatewayClient, kind: ModelKindName, settings: Settings) -> str:
    """The model ``kind`` requests use on ``client`` when nobody chose one ("" = none known: the gateway's
    own default, or for vision whichever listed model sees images)."""
    if is_guild_client(client):
        config = client.config
        own = {"chat": config.chat_model, "vision": config.vision_model, "image": config.image_model}.get(kind, "")
        return own or _profile_default(client, kind)
    g = settings.gateway
    if kind == "chat":
        return g.chat_model
    if kind == "vision":
        return g.vision_model
    if kind == "image":
        return g.image_model
    configured = {"speech": g.speech_model, "transcription": g.transcription_model, "embedding": g.embedding_model,
                  "video": g.video_model, "music": g.music_model}[kind]
    return configured or _profile_default(client, kind)


def default_voice(client: GatewayClient, settings: Settings) -> str:
    """The voice speech uses on ``client``: ``[gateway] voice`` on the operator's, else the profile's."""
    profile = client.profile
    own = "" if is_guild_client(client) else settings.gateway.voice
    return own or profile.default_voice or (profile.voices[0] if profile.voices else "")
