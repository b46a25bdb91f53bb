"""A guild's knowledge: documents, their chunks and embeddings, and nearest-chunk search.

Three search paths, decided once at ``open()`` (``VectorStore.backend``):

- ``sqlite-vec``: SQLite with the extension loaded into the connection (``bot.storage.extensions``):
  ``vec_distance_cosine`` over the guild's chunks, in the database thread;
- ``pgvector``: PostgreSQL whose server has the ``vector`` extension (created here when available): the
  ``real[]`` column cast to ``vector`` and ordered by ``<=>`` (cosine distance) in the server;
- ``exact``: neither (or ``exact=True``): the guild's vectors are read and ranked with numpy in a thread.

A guild's rows are never read for another guild: every statement filters by ``guild_id`` (a chunk's
guild is stored with it, the same as its document's). Scores are cosine similarities (1 = same direction).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from bot.rendering.user_facing import UserFacingError
from bot.storage.errors import StorageError
from bot.storage.extensions import sqlite_vec_problem
from bot.storage.records import Row
from bot.storage.store import Store
from bot.storage.tx import SyncTx

__all__ = ["ChunkToStore", "Document", "Hit", "VectorStore", "DimensionMismatch", "Backend"]

log = logging.getLogger(__name__)

# (VectorStore has a method named ``list``: annotations inside the class use these)
Documents = list["Document"]
Hits = list["Hit"]

Backend = Literal["sqlite-vec", "pgvector", "exact"]

_DOC_COLUMNS = "id, guild_id, source, title, chunk_count, tokens, added_by, added_at, content_hash"
_HIT_COLUMNS = "c.document_id, d.source, d.title, c.idx, c.heading, c.text"
_PG_ARRAY_HEADER = 20  # array_send of a one-dimensional array: ndim, flags, element type, length, lower bound


@dataclass(frozen=True)
class ChunkToStore:
    text: str
    embedding: Sequence[float]
    heading: str | None = None


@dataclass(frozen=True)
class Document:
    id: int
    guild_id: int
    source: str
    title: str
    chunk_count: int
    tokens: int
    added_by: int
    added_at: float
    content_hash: str


@dataclass(frozen=True)
class Hit:
    document_id: int
    source: str
    title: str
    chunk_index: int
    heading: str | None
    text: str
    score: float  # cosine similarity, higher is closer (≤ 1)


class DimensionMismatch(UserFacingError):
    """A vector whose length does not match: the chunks of one document differ, or a query's length matches
    none of the guild's stored chunks (the embedding model changed since the documents were added)."""

    code = "knowledge_dimensions"

    def __init__(self, got: int, expected: int, *, query: bool) -> None:
        self.got = got
        self.expected = expected
        self.query = query
        what = "the search vector" if query else "a chunk's vector"
        super().__init__(f"{what} has {got} dimensions; the knowledge base holds {expected}-dimension vectors")

    def user_message(self) -> str:
        if self.query:
            return (f"This server's knowledge base was embedded with another model ({self.expected} dimensions, "
                    f"the current one gives {self.got}). An admin needs to add the documents again.")
        return f"The document's embeddings do not all have the same length ({self.got} and {self.expected})."


class VectorStore:
    """The knowledge tables of one ``Store``; see the module's docstring for the search paths."""

    backend: Backend

    def __init__(self, store: Store, *, exact: bool = False) -> None:
        """``exact=True`` ignores any extension and always searches with numpy (tests, comparisons)."""
        self.store = store
        self.force_exact = exact
        self.backend = "exact"
        self.exact_reason = "not opened yet"

    async def open(self) -> None:
        """Decide the search path (the store must be open and migrated)."""
        if self.force_exact:
            self.backend, self.exact_reason = "exact", "exact search was asked for"
        elif self.store.dialect == "sqlite":
            self.backend, self.exact_reason = await self._sqlite_path()
        else:
            self.backend, self.exact_reason = await self._postgres_path()
        if self.backend == "exact" and not self.force_exact:
            log.warning("knowledge: searching with numpy over each guild's vectors: %s", self.exact_reason)
        else:
            log.info("knowledge: search by %s", self.backend)

    async def _sqlite_path(self) -> tuple[Backend, str]:
        problem = sqlite_vec_problem()
        if problem is not None:
            return "exact", problem
        try:
            await self.store.fetchval("SELECT vec_version()")
        except StorageError as exc:
            return "exact", f"sqlite-vec is not loaded into the connection ({exc})"
        return "sqlite-vec", ""

    async def _postgres_path(self) -> tuple[Backend, str]:
        if await self.store.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'vector'") is not None:
            return "pgvector", ""
        available = await self.store.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        if available is None:
            return "exact", "the PostgreSQL server has no pgvector extension"
        try:
            await self.store.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except StorageError as exc:
            # another process may have created it meanwhile; otherwise we lack the privilege
            if await self.store.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'vector'") is None:
                return "exact", f"the pgvector extension could not be created ({exc})"
        return "pgvector", ""

    # -- documents --------------------------------------------------------------------------------

    async def replace_document(
        self, guild_id: int, source: str, title: str, content_hash: str, chunks: Sequence[ChunkToStore],
        *, added_by: int, tokens: int,
    ) -> Document:
        """Store (guild_id, source) with ``chunks``, replacing any earlier version and its chunks in one
        transaction (the document keeps its id)."""
        if not chunks:
            raise ValueError("a document needs at least one chunk")
        vectors = [_as_vector(chunk.embedding) for chunk in chunks]
        dims = len(vectors[0])
        for vector in vectors:
            if len(vector) != dims:
                raise DimensionMismatch(len(vector), dims, query=False)
        now = time.time()
        encode = self._encoder()
        rows = [
            (guild_id, index, chunk.heading, chunk.text, encode(vector), dims)
            for index, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True))
        ]

        def body(tx: SyncTx) -> Document:
            row = tx.fetchone(
                "INSERT INTO knowledge_documents (guild_id, source, title, content_hash, chunk_count, tokens,"
                " added_by, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (guild_id, source) DO UPDATE SET title = excluded.title,"
                " content_hash = excluded.content_hash, chunk_count = excluded.chunk_count,"
                " tokens = excluded.tokens, added_by = excluded.added_by, added_at = excluded.added_at"
                f" RETURNING {_DOC_COLUMNS}",
                (guild_id, source, title, content_hash, len(chunks), int(tokens), added_by, now),
            )
            assert row is not None
            document = _document(row)
            tx.execute("DELETE FROM knowledge_chunks WHERE guild_id = ? AND document_id = ?", (guild_id, document.id))
            tx.executemany(
                "INSERT INTO knowledge_chunks (document_id, guild_id, idx, heading, text, embedding, dims)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(document.id, *values) for values in rows],
            )
            return document

        return await self.store.run(body)

    async def find(self, guild_id: int, source: str) -> Document | None:
        row = await self.store.fetchone(
            f"SELECT {_DOC_COLUMNS} FROM knowledge_documents WHERE guild_id = ? AND source = ?", (guild_id, source)
        )
        return None if row is None else _document(row)

    async def list(self, guild_id: int) -> Documents:
        """The guild's documents, the latest added first."""
        rows = await self.store.fetchall(
            f"SELECT {_DOC_COLUMNS} FROM knowledge_documents WHERE guild_id = ? ORDER BY added_at DESC, id DESC",
            (guild_id,),
        )
        return [_document(row) for row in rows]

    async def remove(self, guild_id: int, document_id: int) -> Document | None:
        """Delete the document and its chunks (vectors included); None when the guild has no such document."""

        def body(tx: SyncTx) -> Document | None:
            tx.execute("DELETE FROM knowledge_chunks WHERE guild_id = ? AND document_id = ?", (guild_id, document_id))
            row = tx.fetchone(
                f"DELETE FROM knowledge_documents WHERE guild_id = ? AND id = ? RETURNING {_DOC_COLUMNS}",
                (guild_id, document_id),
            )
            return None if row is None else _document(row)

        return await self.store.run(body)

    # -- search -----------------------------------------------------------------------------------

    async def search(self, guild_id: int, vector: Sequence[float], *, limit: int = 5) -> Hits:
        """The guild's ``limit`` chunks closest to ``vector``, the closest first.

        Only chunks of the vector's length are compared; a guild that has chunks, none of that length, is
        refused (``DimensionMismatch``) rather than answered with nothing.
        """
        query = _as_vector(vector)
        if limit <= 0:
            return []
        if self.backend == "sqlite-vec":
            hits = await self._search_sqlite_vec(guild_id, query, limit)
        elif self.backend == "pgvector":
            hits = await self._search_pgvector(guild_id, query, limit)
        else:
            hits = await self._search_exact(guild_id, query, limit)
        if not hits:
            stored = await self.store.fetchval(
                "SELECT dims FROM knowledge_chunks WHERE guild_id = ? AND dims <> ? LIMIT 1", (guild_id, len(query))
            )
            if stored is not None:
                raise DimensionMismatch(len(query), int(stored), query=True)
        return hits

    async def _search_sqlite_vec(self, guild_id: int, query: np.ndarray, limit: int) -> Hits:
        rows = await self.store.fetchall(
            f"SELECT {_HIT_COLUMNS}, vec_distance_cosine(c.embedding, ?) AS distance"
            " FROM knowledge_chunks c JOIN knowledge_documents d ON d.id = c.document_id AND d.guild_id = c.guild_id"
            " WHERE c.guild_id = ? AND c.dims = ? ORDER BY distance, c.document_id, c.idx LIMIT ?",
            (query.tobytes(), guild_id, len(query), limit),
        )
        return [_hit(row, 1.0 - float(row["distance"])) for row in rows]

    async def _search_pgvector(self, guild_id: int, query: np.ndarray, limit: int) -> Hits:
        rows = await self.store.fetchall(
            f"SELECT {_HIT_COLUMNS}, c.embedding::vector <=> CAST(? AS real[])::vector AS distance"
            " FROM knowledge_chunks c JOIN knowledge_documents d ON d.id = c.document_id AND d.guild_id = c.guild_id"
            " WHERE c.guild_id = ? AND c.dims = ? ORDER BY distance, c.document_id, c.idx LIMIT ?",
            (query.tolist(), guild_id, len(query), limit),
        )
        return [_hit(row, 1.0 - float(row["distance"])) for row in rows]

    async def _search_exact(self, guild_id: int, query: np.ndarray, limit: int) -> Hits:
        # PostgreSQL hands the real[] over in its binary form (bytes, decoded by numpy in the thread), not as
        # a Python list per row built on the event loop
        column = "array_send(embedding)" if self.store.dialect == "postgresql" else "embedding"
        rows = await self.store.fetchall(
            f"SELECT id, {column} AS embedding FROM knowledge_chunks WHERE guild_id = ? AND dims = ?",
            (guild_id, len(query)),
        )
        if not rows:
            return []
        ids = [int(row["id"]) for row in rows]
        blobs = [bytes(row["embedding"]) for row in rows]
        ranked = await asyncio.to_thread(_rank, blobs, query, limit, self.store.dialect == "postgresql")
        chosen = {ids[index]: score for index, score in ranked}
        marks = ", ".join("?" for _ in chosen)
        hit_rows = await self.store.fetchall(
            f"SELECT c.id, {_HIT_COLUMNS}"
            " FROM knowledge_chunks c JOIN knowledge_documents d ON d.id = c.document_id AND d.guild_id = c.guild_id"
            f" WHERE c.guild_id = ? AND c.id IN ({marks})",
            (guild_id, *chosen),
        )
        hits = [(_hit(row, chosen[int(row["id"])]), int(row["id"])) for row in hit_rows]
        hits.sort(key=lambda pair: (-pair[0].score, pair[0].document_id, pair[0].chunk_index))
        return [hit for hit, _ in hits]

    def _encoder(self) -> Any:
        """How a vector is written: float32 bytes (SQLite), a list of floats for ``real[]`` (PostgreSQL)."""
        if self.store.dialect == "postgresql":
            return lambda vector: vector.tolist()
        return lambda vector: vector.tobytes()


def _as_vector(values: Sequence[float]) -> np.ndarray:
    vector = np.asarray(values, dtype="<f4")
    if vector.ndim != 1 or vector.size == 0:
        raise ValueError("an embedding is a non-empty list of numbers")
    if not np.all(np.isfinite(vector)) or not np.any(vector):
        raise ValueError("an embedding needs finite numbers, not all zero (a zero vector has no direction)")
    return vector


def _rank(blobs: list[bytes], query: np.ndarray, limit: int, postgres: bool) -> list[tuple[int, float]]:
    """(row position, cosine similarity) of the ``limit`` closest rows, closest first (in a thread)."""
    dims = len(query)
    if postgres:
        pair = np.dtype([("length", ">i4"), ("value", ">f4")])  # each element: its byte length, then the float
        matrix = np.stack([np.frombuffer(blob, dtype=pair, offset=_PG_ARRAY_HEADER)["value"] for blob in blobs])
    else:
        matrix = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dims)
    matrix = matrix.astype(np.float32, copy=False)
    norms = np.linalg.norm(matrix, axis=1)
    norms[norms == 0] = np.inf  # a zero row (never written by this module) scores 0
    scores = (matrix @ query) / (norms * float(np.linalg.norm(query)))
    count = min(limit, len(scores))
    top = np.argpartition(-scores, count - 1)[:count]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(int(index), float(scores[index])) for index in top]


def _document(row: Row) -> Document:
    return Document(
        id=int(row["id"]), guild_id=int(row["guild_id"]), source=row["source"], title=row["title"],
        chunk_count=int(row["chunk_count"]), tokens=int(row["tokens"]), added_by=int(row["added_by"]),
        added_at=float(row["added_at"]), content_hash=row["content_hash"],
    )


def _hit(row: Row, score: float) -> Hit:
    return Hit(
        document_id=int(row["document_id"]), source=row["source"], title=row["title"], chunk_index=int(row["idx"]),
        heading=row["heading"], text=row["text"], score=min(1.0, score),
    )
