"""Call metadata: one typed object on every result, filled from response headers and body."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["COST_UNITS", "CallMeta", "apply_headers", "apply_body", "parse_reset"]

#: header map fields that carry a call's cost -> the unit they state (see ``CallMeta.cost_unit``)
COST_UNITS: dict[str, str] = {"credits_used": "credits", "cost_usd": "USD"}


@dataclass(slots=True)
class CallMeta:
    """What is known about one call: who answered, with which model, at what cost and rate-limit state.

    ``model_used`` prefers the header (``x-model-used`` / ``x-aicord-model``) and falls back to the
    body's ``model``; both raw values are kept. ``fallback_from``/``fallback_depth`` combine a
    gateway-side fallback (``x-fallback-*`` headers) with the client's own fallback models;
    ``gateway_fallback_from`` names the primary gateway when a fallback gateway answered.
    """

    profile: str
    gateway: str = ""
    operation: str = ""
    status: int | None = None
    request_id: str | None = None
    model_requested: str | None = None
    model_used: str | None = None
    model_from_header: str | None = None
    model_from_body: str | None = None
    fallback_from: str | None = None
    fallback_depth: int = 0
    gateway_fallback_from: str | None = None
    fallback_errors: list[str] = field(default_factory=list)
    provider: str | None = None
    upstream: str | None = None
    tier: str | None = None
    credits_used: float | None = None
    #: the unit of ``credits_used`` as the gateway reported it: "credits" (``x-credits-used``), a currency
    #: code such as "USD" (LiteLLM's ``x-litellm-response-cost``), or None when the gateway did not say
    cost_unit: str | None = None
    latency_ms: float | None = None
    gateway_latency_ms: float | None = None
    ratelimit_limit: int | None = None
    ratelimit_remaining: int | None = None
    ratelimit_reset: float | None = None  # seconds from when the answer arrived
    attempts: int = 1
    probe: str | None = None  # the endpoint used by health()

    @property
    def fell_back(self) -> bool:
        """True when another model or gateway than the one asked for produced the answer."""
        return bool(self.fallback_depth or self.fallback_from or self.gateway_fallback_from)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    f = _float(value)
    return None if f is None else int(f)


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str | None, now: float | None = None) -> float | None:
    """Seconds until a rate-limit window resets.

    Accepts an epoch timestamp (``1699000000``, also in ms), a number of seconds (``30``) or an
    OpenAI-style duration (``1s``, ``6m0s``, ``250ms``).
    """
    if not value:
        return None
    value = value.strip()
    num = _float(value)
    if num is not None:
        now = time.time() if now is None else now
        if num > 1e12:  # epoch milliseconds
            return max(0.0, num / 1000.0 - now)
        if num > 1e9:  # epoch seconds
            return max(0.0, num - now)
        return max(0.0, num)
    total = 0.0
    matched = False
    i = 0
    n = len(value)
    while i < n:
        j = i
        while j < n and (value[j].isdigit() or value[j] == "."):
            j += 1
        if j == i:
            return None
        k = j
        while k < n and value[k].isalpha():
            k += 1
        unit = value[j:k]
        if unit not in _UNITS:
            return None
        total += float(value[i:j]) * _UNITS[unit]
        matched = True
        i = k
    return total if matched else None


def _first(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        v = headers.get(name)
        if v is not None and v != "":
            return v
    return None


def apply_headers(meta: CallMeta, headers: Mapping[str, str], header_map: Mapping[str, tuple[str, ...]]) -> None:
    """Fill ``meta`` from response headers using a profile's header map (field -> header names)."""
    get = headers.get
    for fname, names in header_map.items():
        raw = None
        for name in names:
            raw = get(name)
            if raw:
                break
        if not raw:
            continue
        if fname == "request_id":
            meta.request_id = raw
        elif fname == "model_used":
            meta.model_from_header = raw
            meta.model_used = raw
        elif fname == "fallback_from":
            meta.fallback_from = raw
        elif fname == "fallback_depth":
            meta.fallback_depth = max(meta.fallback_depth, _int(raw) or 0)
        elif fname == "provider":
            meta.provider = raw
        elif fname == "upstream":
            meta.upstream = raw
        elif fname == "tier":
            meta.tier = raw
        elif fname in COST_UNITS:
            meta.credits_used = _float(raw)
            meta.cost_unit = COST_UNITS[fname] if meta.credits_used is not None else None
        elif fname == "gateway_latency_ms":
            meta.gateway_latency_ms = _float(raw)
        elif fname == "ratelimit_limit":
            meta.ratelimit_limit = _int(raw)
        elif fname == "ratelimit_remaining":
            meta.ratelimit_remaining = _int(raw)
        elif fname == "ratelimit_reset":
            meta.ratelimit_reset = parse_reset(raw)


def apply_body(meta: CallMeta, body: Mapping[str, Any]) -> None:
    """Fill ``meta`` from fields a gateway puts in the JSON body (model, provider, id, cost)."""
    model = body.get("model")
    if isinstance(model, str) and model:
        meta.model_from_body = model
        if meta.model_used is None:
            meta.model_used = model
    provider = body.get("provider")
    if isinstance(provider, str) and provider and meta.provider is None:
        meta.provider = provider
    if meta.upstream is None:
        upstream = body.get("upstream")
        if isinstance(upstream, str) and upstream:
            meta.upstream = upstream
    if meta.request_id is None:
        rid = body.get("id") or body.get("request_id")
        if isinstance(rid, str) and rid:
            meta.request_id = rid
    if meta.credits_used is None:
        usage = body.get("usage")
        if isinstance(usage, dict):
            for key, unit in (("cost", None), ("credits", "credits")):  # a bare "cost" has no stated unit
                cost = usage.get(key)
                if isinstance(cost, (int, float)) and not isinstance(cost, bool):
                    meta.credits_used, meta.cost_unit = float(cost), unit
                    break
    if meta.fallback_from is None:
        fb = body.get("fallback_from")
        if isinstance(fb, str) and fb:
            meta.fallback_from = fb
