"""The knowledge use case, built once by the factory as ``bot.knowledge``.

Adding: a file's text is extracted (in a thread), cut into chunks, embedded through the gateway and
stored per guild with its source (file name or message link), replacing the chunks of an earlier
version of the same source. A document whose content (and embedding model and chunking) has not
changed is not embedded again. Searching: the query is embedded and the guild's nearest chunks are
returned with their sources. Every embedding call is charged to the member in embedding tokens:
reserved with an estimate before, settled with the tokens the gateway counted.

The store (``bot.knowledge.store.VectorStore``) keeps each guild's rows apart; this service always
passes ``requester.guild_id`` and nothing else. A guild with its own gateway embeds there (its profile's
embedding model); the operator's gateway uses ``[gateway] embedding_model``.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.budgets.rules import Feature, Requester
from bot.gateways.defaults import default_model
from bot.gateways.directory import GatewayDirectory, is_guild_client
from bot.knowledge.chunking import chunk_text, embedding_input
from bot.knowledge.download import fetch_document
from bot.knowledge.errors import (
    DocumentTooLarge,
    DocumentTooLong,
    EmptyDocument,
    KnowledgeUnavailable,
    NoKnowledgeQuery,
)
from bot.knowledge.extract import document_kind, extract_async
from bot.knowledge.store import ChunkToStore, Document, Hit, VectorStore
from bot.rendering.errors import guild_gateway_lacks

if TYPE_CHECKING:
    import aiohttp

    from bot.app.settings import Settings
    from bot.budgets.service import BudgetService
    from bot.storage.store import Store
    from gateway_client import CallMeta, GatewayClient

log = logging.getLogger(__name__)

__all__ = ["AddResult", "KnowledgeService", "content_hash", "estimate_tokens", "MAX_QUERY_CHARS", "EMBED_BATCH"]

Vectors = list[list[float]]

#: chunks sent in one embeddings request
EMBED_BATCH = 64
#: the longest search query embedded
MAX_QUERY_CHARS = 2000
#: the longest source (a file name or a message link) and title kept
MAX_SOURCE_CHARS = 300


@dataclass(frozen=True, slots=True)
class AddResult:
    """What ``add_file`` / ``add_text`` did: the stored document, whether it replaced an earlier version,
    and whether it was unchanged (then nothing was embedded or charged)."""

    document: Document
    replaced: bool
    unchanged: bool


def estimate_tokens(texts: Sequence[str]) -> int:
    """A cautious estimate of the tokens ``texts`` are billed as (about 4 characters a token, rounded up)."""
    return sum(max(1, math.ceil(len(t) / 4)) for t in texts)


class KnowledgeService:
    """A guild's documents: added, listed, removed and searched, the embedding calls charged."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        gateway: GatewayClient,
        quotas: BudgetService,
        *,
        cdn_http: Callable[[], aiohttp.ClientSession],
        vectors: VectorStore | None = None,
        gateways: GatewayDirectory | None = None,
    ) -> None:
        self.settings = settings
        #: the operator's gateway (what ``available`` describes); a request goes to its guild's (``gateways``)
        self.gateway = gateway
        self.gateways = gateways if gateways is not None else GatewayDirectory(gateway)
        self.quotas = quotas
        self.vectors = vectors if vectors is not None else VectorStore(store)
        self._cdn_http = cdn_http

    # -- what the gateway offers ----------------------------------------------------------------------

    def embedding_model_on(self, gateway: GatewayClient) -> str:
        return default_model(gateway, "embedding", self.settings)

    def available_on(self, gateway: GatewayClient) -> bool:
        return gateway.profile.supports("embeddings") and bool(self.embedding_model_on(gateway))

    @property
    def embedding_model(self) -> str:
        return self.embedding_model_on(self.gateway)

    @property
    def available(self) -> bool:
        """The gateway offers embeddings and a model is known (else no /knowledge command is registered)."""
        return self.available_on(self.gateway)

    async def available_in(self, guild_id: int) -> bool:
        """Whether the gateway serving ``guild_id`` offers the knowledge base (False when it can't be used)."""
        try:
            return self.available_on(await self.gateways.for_guild(guild_id))
        except Exception as exc:  # the guild's own gateway can't be used (its key unreadable)
            log.info("knowledge: guild %s: its gateway can't be used: %r", guild_id, exc)
            return False

    def unavailable_reason_on(self, gateway: GatewayClient) -> str:
        """What a member is told where ``gateway`` offers no knowledge base."""
        if is_guild_client(gateway) and not self.available_on(gateway):
            return guild_gateway_lacks(gateway.profile.name, "embeddings, which the knowledge base needs")
        return self._operator_reason() if gateway is self.gateway else ""

    @property
    def unavailable_reason(self) -> str:
        """What a member is told where the knowledge base is not offered."""
        return self._operator_reason()

    def _operator_reason(self) -> str:
        profile = self.gateway.profile.name
        if not self.gateway.profile.supports("embeddings"):
            return (f"This bot has no knowledge base: the AI gateway it uses ({profile}) offers no embeddings, "
                    "which searching documents needs.")
        if not self.embedding_model:
            return ("This bot has no knowledge base: no embedding model is configured "
                    "([gateway] embedding_model).")
        return ""

    async def start(self) -> None:
        """Open the vector store (after the store itself is open): the operator's gateway, or a guild's own,
        may offer the knowledge base."""
        await self.vectors.open()

    # -- adding ---------------------------------------------------------------------------------------

    def check_file(self, filename: str, content_type: str | None, size: int | None) -> None:
        """Refuse a file by what Discord says of it (type, size) before it is downloaded."""
        document_kind(filename, content_type)
        limit = self.settings.knowledge.max_file_bytes
        if size is not None and size > limit:
            raise DocumentTooLarge(filename, size, limit)

    async def download(self, url: str, filename: str, *, content_type: str | None = None,
                       size: int | None = None) -> bytes:
        """An attachment's bytes from Discord's CDN (checked by type and size first, read within the cap)."""
        self.check_file(filename, content_type, size)
        return await fetch_document(self._cdn_http(), url, filename, hosts=self.settings.discord.cdn_hosts,
                                    max_bytes=self.settings.knowledge.max_file_bytes)

    async def add_file(self, requester: Requester, *, filename: str, data: bytes,
                       content_type: str | None) -> AddResult:
        """Add (or replace) the file ``filename`` in the requester's guild: txt, md, html or pdf."""
        guild_id, gateway = await self._serving(requester)
        self.check_file(filename, content_type, len(data))
        extracted = await extract_async(filename, data, content_type)
        source = _short(filename)
        return await self._add(requester, guild_id, gateway, source, _short(extracted.title) or source,
                               extracted.text)

    async def add_text(self, requester: Requester, *, source: str, title: str, text: str) -> AddResult:
        """Add (or replace) a text (a message) under ``source`` (its link) in the requester's guild."""
        guild_id, gateway = await self._serving(requester)
        if not text.strip():
            raise EmptyDocument(source)
        return await self._add(requester, guild_id, gateway, _short(source), _short(title) or _short(source), text)

    async def _add(self, requester: Requester, guild_id: int, gateway: GatewayClient, source: str, title: str,
                   text: str) -> AddResult:
        k = self.settings.knowledge
        model = self.embedding_model_on(gateway)
        digest = content_hash(text, model=model, chunk_chars=k.chunk_chars, overlap_chars=k.overlap_chars)
        existing = await self.vectors.find(guild_id, source)
        if existing is not None and existing.content_hash == digest:
            log.info("knowledge: %s in guild %s unchanged; nothing embedded", source, guild_id)
            return AddResult(existing, replaced=False, unchanged=True)
        chunks = chunk_text(text, chunk_chars=k.chunk_chars, overlap_chars=k.overlap_chars)
        if not chunks:
            raise EmptyDocument(source)
        if len(chunks) > k.max_document_chunks:
            raise DocumentTooLong(source, len(chunks), k.max_document_chunks)
        vectors, tokens = await self._embed(requester, gateway, [embedding_input(c) for c in chunks])
        stored = [ChunkToStore(text=c.text, embedding=v, heading=c.heading)
                  for c, v in zip(chunks, vectors, strict=True)]
        document = await self.vectors.replace_document(guild_id, source, title, digest, stored,
                                                       added_by=requester.user_id, tokens=tokens)
        log.info("knowledge: %s %s in guild %s: %d chunks, %d embedding tokens", source,
                 "replaced" if existing else "added", guild_id, len(chunks), tokens)
        return AddResult(document, replaced=existing is not None, unchanged=False)

    # -- reading --------------------------------------------------------------------------------------

    async def list(self, guild_id: int) -> builtins.list[Document]:
        return list(await self.vectors.list(guild_id))

    async def remove(self, guild_id: int, document_id: int) -> Document | None:
        """Remove a document of ``guild_id`` and its chunks; None when the guild has no such document."""
        removed = await self.vectors.remove(guild_id, document_id)
        if removed is not None:
            log.info("knowledge: %s removed from guild %s", removed.source, guild_id)
        return removed

    async def search(self, requester: Requester, query: str, *, limit: int | None = None,
                     min_score: float | None = None) -> builtins.list[Hit]:
        """The requester's guild's chunks nearest to ``query`` (best first, none below ``min_score``);
        the query's embedding is charged to the requester."""
        guild_id, gateway = await self._serving(requester)
        query = query.strip()[:MAX_QUERY_CHARS]
        if not query:
            raise NoKnowledgeQuery()
        k = self.settings.knowledge
        floor = k.min_score if min_score is None else min_score
        [vector], _tokens = await self._embed(requester, gateway, [query])
        hits = await self.vectors.search(guild_id, vector, limit=limit or k.search_limit)
        return [h for h in hits if h.score >= floor]

    # -- embedding, charged ---------------------------------------------------------------------------

    async def _embed(self, requester: Requester, gateway: GatewayClient, texts: Sequence[str]) -> tuple[Vectors, int]:
        """Vectors for ``texts`` (in batches) and the tokens charged: reserved by estimate, settled with
        the gateway's count (the estimate where it gives none). A batch that fails after others were
        billed charges what was billed, then the error goes on."""
        model = self.embedding_model_on(gateway)
        vectors: Vectors = []
        tokens = 0
        credits: float | None = None
        meta: CallMeta | None = None
        async with self.quotas.charge(requester, Feature.EMBEDDING, embedding_tokens=estimate_tokens(texts),
                                      model=model) as hold:
            try:
                for start in range(0, len(texts), EMBED_BATCH):
                    batch = list(texts[start:start + EMBED_BATCH])
                    result = await gateway.embed(batch, model)
                    if len(result.vectors) != len(batch):
                        raise ValueError(f"the gateway returned {len(result.vectors)} vectors for {len(batch)} texts")
                    vectors.extend(result.vectors)
                    tokens += result.usage.prompt_tokens or result.usage.total_tokens or estimate_tokens(batch)
                    meta = result.meta
                    if result.meta.credits_used is not None:
                        credits = (credits or 0.0) + result.meta.credits_used
            except BaseException:
                if tokens:
                    await hold.settle(embedding_tokens=tokens, meta=meta, credits=credits, outcome="error")
                raise
            await hold.settle(embedding_tokens=tokens, meta=meta, credits=credits)
        return vectors, tokens

    async def _serving(self, requester: Requester) -> tuple[int, GatewayClient]:
        """The requester's guild and the gateway that embeds for it (its own, else the operator's); raises
        ``KnowledgeUnavailable`` (a DM, no embeddings there) or the guild gateway's ``GuildGatewayUnavailable``."""
        if requester.guild_id is None:
            if not self.available:
                raise KnowledgeUnavailable(self.unavailable_reason)
            raise KnowledgeUnavailable("The knowledge base belongs to a server: use it in a server's channel.")
        gateway = await self.gateways.for_guild(requester.guild_id)
        if not self.available_on(gateway):
            raise KnowledgeUnavailable(self.unavailable_reason_on(gateway))
        return requester.guild_id, gateway


def content_hash(text: str, *, model: str, chunk_chars: int, overlap_chars: int) -> str:
    """What decides that a document is unchanged: its text, the embedding model and the chunking."""
    key = f"{model}\n{chunk_chars}\n{overlap_chars}\n{text}"
    return hashlib.sha256(key.encode("utf-8", errors="replace")).hexdigest()


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_SOURCE_CHARS else text[: MAX_SOURCE_CHARS - 1] + "…"

