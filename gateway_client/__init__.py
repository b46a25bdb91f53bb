"""Gatecord's async client for AI gateways (profiles, typed results, SSE, errors, retries)."""

from .audio import SpeechAudio, Transcription
from .client import GatewayClient
from .config import ClientOptions, GatewayConfig
from .errors import (
    AuthenticationError,
    ContextTooLong,
    GatewayError,
    GatewayTimeout,
    InsufficientCredits,
    InvalidRequest,
    InvalidResponse,
    ModelNotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ResultDownloadFailed,
    StreamInterrupted,
    Unsupported,
    UpstreamUnavailable,
)
from .image_edits import ImageEditRequest
from .media_jobs import DownloadedMedia, MediaExpired, MusicRequest, MusicResult, VideoJob, VideoRequest
from .meta import CallMeta
from .models import (
    ChatMessage,
    ChatRequest,
    ChatResult,
    CreditsBalance,
    EmbeddingResult,
    GeneratedImage,
    HealthStatus,
    ImageRequest,
    ImageResult,
    ModelInfo,
    ModelKind,
    Usage,
)
from .profiles import PROFILES, Profile, get_profile, register_profile
from .streaming import ChatStream

__all__ = [
    "GatewayClient", "ChatStream",
    "CallMeta", "ChatMessage", "ChatRequest", "ChatResult", "ClientOptions", "CreditsBalance", "EmbeddingResult",
    "GatewayConfig", "GeneratedImage", "HealthStatus", "ImageRequest", "ImageResult", "ModelInfo", "ModelKind",
    "Usage", "SpeechAudio", "Transcription", "PROFILES", "Profile", "get_profile", "register_profile",
    "GatewayError", "AuthenticationError", "PermissionDenied", "RateLimited", "ModelNotFound", "ContextTooLong",
    "InvalidRequest", "UpstreamUnavailable", "GatewayTimeout", "StreamInterrupted", "QuotaExceeded",
    "InsufficientCredits", "Unsupported", "InvalidResponse", "ResultDownloadFailed", "MediaExpired",
    "VideoRequest", "VideoJob", "MusicRequest", "MusicResult", "ImageEditRequest", "DownloadedMedia",
]
