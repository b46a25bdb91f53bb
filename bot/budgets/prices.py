"""Published model prices: an estimate of credits when a gateway sends no cost figure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway_client.meta import CallMeta
    from gateway_client.models import ModelInfo

log = logging.getLogger(__name__)

#: model id -> (input price per 1M tokens, output price per 1M tokens, price per image)
Price = tuple[float | None, float | None, float | None]


class PriceBook:
    def __init__(self) -> None:
        self.prices: dict[str, Price] = {}

    def set_prices(self, models: Iterable[ModelInfo]) -> None:
        """Remember the prices the gateway publishes (models without one are skipped)."""
        for m in models:
            if m.input_price_per_1m is not None or m.output_price_per_1m is not None or m.image_price is not None:
                self.prices[m.id] = (m.input_price_per_1m, m.output_price_per_1m, m.image_price)

    async def load(self, list_models: Callable[[], Awaitable[Iterable[ModelInfo]]]) -> bool:
        """Fetch the published prices once; a gateway without a model list is not an error."""
        try:
            self.set_prices(await list_models())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("model prices unavailable (%s); credits come only from the gateway's headers", type(exc).__name__)
            return False
        return True

    def estimate_credits(self, meta: CallMeta | None, model: str | None, tokens: int, images: int) -> float | None:
        """Cost from published prices (token price = mean of input and output per 1M); None if unknown."""
        name = (meta.model_used or meta.model_requested if meta else None) or model
        price = self.prices.get(name or "")
        if price is None:
            return None
        inp, out, img = price
        per_token = [p for p in (inp, out) if p is not None]
        cost = 0.0
        if per_token and tokens:
            cost += tokens * (sum(per_token) / len(per_token)) / 1_000_000
        if img is not None and images:
            cost += images * img
        return cost
