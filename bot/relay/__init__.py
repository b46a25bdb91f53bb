"""The authenticated, durable ``/send-data`` relay (issue 8).

validation (Discord limits, JSON paths) · keys (hashed, constant-time) · ratelimit (per key) ·
outbox (group-commit store) · transport (Discord calls, nonce / webhook reconciliation, error
classes) · worker (per-channel delivery scheduling and retries) · api (HTTP) ·
metrics (Prometheus) · openapi (the web server's document) · service (wiring).
"""

from bot.relay.keys import KeyStore, NewKey, RelayKey
from bot.relay.service import RelayService
from bot.relay.validation import Issue, PayloadError, RelayMessage, validate_payload

__all__ = [
    "Issue", "KeyStore", "NewKey", "PayloadError", "RelayKey", "RelayMessage", "RelayService", "validate_payload",
]
