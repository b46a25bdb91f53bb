"""The surface of each emulated gateway, written from its document in ``shared/gateway-docs/``.

Choices where a document is silent (kept here so a reader can check them in one place):

* aicordcloud — ``GET /``, ``GET /health`` and ``GET /v1/models`` ("Public model aliases") need no
  key; chat needs ``Authorization: Bearer`` or ``x-api-key``. Chat answers carry
  ``x-aicord-tier/-model/-upstream/-latency-ms``; every ``/v1`` answer carries
  ``x-ratelimit-remaining``. No request-id header (none is documented). Error body has exactly
  ``message`` and ``type``; a 401 says ``"Unauthorized"`` / ``authentication_error`` as documented.
* digicord — everything under ``/api/v1`` needs a Bearer key; errors follow the OpenAI shape
  (the document shows none). No health endpoint and no metadata headers are documented, so
  none are served (``GET /api/v1/health`` → 404): probe with ``GET /api/v1/models``.
* aicredits — ``/api/models``, ``/health``, ``/health/ready`` and the emulator's image files are
  public; everything under ``/v1`` needs ``Authorization: Bearer sk-<64 hex>``. Errors carry a
  numeric ``code`` equal to the HTTP status. No request-id or rate-limit headers are documented.
* aiproxy — every endpoint needs a Bearer key; ``X-RateLimit-Limit/-Remaining/-Reset`` (reset in
  epoch seconds) on every authenticated answer. Typed error codes as in its table. No health
  endpoint documented (probe ``GET /v1/models``).
* openai — every ``/v1`` endpoint needs a Bearer key; every answer carries ``x-request-id`` (UUID);
  model-serving answers carry ``x-model-used`` and ``x-credits-used``; a fallback adds
  ``x-fallback-from`` and ``x-fallback-depth``. OpenAI error shape. No health endpoint documented.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

PROFILES: tuple[str, ...] = ("aicordcloud", "digicord", "aicredits", "aiproxy", "openai")


@dataclass(frozen=True)
class Profile:
    """What differs between gateways at the HTTP level."""

    name: str
    base_path: str
    error_style: str  # "aicord" | "openai" | "aicredits" | "aiproxy"
    accepts_x_api_key: bool = False
    request_id_header: str | None = None
    public_paths: frozenset[str] = frozenset()
    ratelimit_style: str | None = None  # "aicord" | "aiproxy" | None
    provider_in_body: bool = False  # chat/completion answers carry "provider"
    strip_model_prefix: bool = False  # answer's "model" drops "vendor/" (aicredits' example)
    object_id_ids: bool = False  # 24-hex ids like DigiCord's example answers
    openai_meta_headers: bool = False  # x-model-used / x-credits-used / x-fallback-*
    aicord_meta_headers: bool = False
    default_chat_model: str | None = None  # used when "model" is omitted (None → 400)


_PROFILES: dict[str, Profile] = {
    "aicordcloud": Profile(
        name="aicordcloud",
        base_path="/v1",
        error_style="aicord",
        accepts_x_api_key=True,
        public_paths=frozenset({"/", "/health", "/v1/models"}),
        ratelimit_style="aicord",
        aicord_meta_headers=True,
    ),
    "digicord": Profile(
        name="digicord",
        base_path="/api/v1",
        error_style="openai",
        provider_in_body=True,
        object_id_ids=True,
        default_chat_model="google/gemini-flash-1.5",
    ),
    "aicredits": Profile(
        name="aicredits",
        base_path="/v1",
        error_style="aicredits",
        public_paths=frozenset({"/api/models", "/health", "/health/ready"}),
        strip_model_prefix=True,
    ),
    "aiproxy": Profile(
        name="aiproxy",
        base_path="/v1",
        error_style="aiproxy",
        ratelimit_style="aiproxy",
        provider_in_body=True,
    ),
    "openai": Profile(
        name="openai",
        base_path="/v1",
        error_style="openai",
        request_id_header="x-request-id",
        openai_meta_headers=True,
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; ``ValueError`` for an unknown one."""
    try:
        return _PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown gateway profile {name!r}; expected one of {PROFILES}") from None


def default_api_key(profile: str) -> str:
    """Deterministic default key: aicredits ``sk-`` + 64 hex, others ``test-<profile>-key``."""
    if profile == "aicredits":
        return "sk-" + hashlib.sha256(b"gatecord-test-aicredits-key").hexdigest()
    return f"test-{profile}-key"


def mask_key(key: str) -> str:
    """A key shortened so it can be printed: never more than 3 leading and 2 trailing chars."""
    if len(key) <= 8:
        return "***"
    return f"{key[:3]}***{key[-2:]}"
