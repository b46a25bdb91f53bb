"""bot/knowledge/store.py on every search path: sqlite-vec, SQLite exact, pgvector, PostgreSQL exact.

Each test runs on the four paths against a real database (the PostgreSQL server of tests/pg_server.py has
pgvector: `make test` builds it when missing). Guild isolation is checked on every path and operation.
"""

from __future__ import annotations

import math
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from bot.knowledge.store import ChunkToStore, DimensionMismatch, VectorStore
from bot.storage.store import Store

GUILD_A, GUILD_B, GUILD_C = 111, 222, 333
ADMIN = 42

#: path id → (database, exact option, the backend VectorStore must pick)
PATHS = {
    "sqlite-vec": ("sqlite", False, "sqlite-vec"),
    "sqlite-exact": ("sqlite", True, "exact"),
    "pgvector": ("postgresql", False, "pgvector"),
    "postgresql-exact": ("postgresql", True, "exact"),
}


@pytest.fixture(params=list(PATHS))
async def vectors(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    database, exact, expected = PATHS[request.param]
    if database == "sqlite":
        store = Store(tmp_path / "knowledge.db")
    else:
        store = Store(url=request.getfixturevalue("pg_migrated_url"))
    await store.open()
    try:
        opened = VectorStore(store, exact=exact)
        await opened.open()
        # sqlite-vec needs a Python whose sqlite3 loads extensions (the Makefile's venv has one); pgvector
        # needs the extension on the test server (`make test` builds it): either missing fails here, loudly
        assert opened.backend == expected, (
            f"{opened.exact_reason} (Python {sys.executable}: `make clean test` makes .venv with one that can)")
        yield opened
    finally:
        await store.close()


def angle(degrees: float) -> list[float]:
    """A 3-d vector at ``degrees`` from (1, 0, 0) in the x-y plane: its cosine with it is cos(degrees)."""
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees)), 0.0]


async def add(vectors: VectorStore, guild: int, source: str, *chunks: tuple[str, list[float]], title: str = "Doc",
              content_hash: str = "h1") -> int:
    document = await vectors.replace_document(
        guild, source, title, content_hash, [ChunkToStore(text, vector, heading=f"§{text}") for text, vector in chunks],
        added_by=ADMIN, tokens=10 * len(chunks),
    )
    return document.id


async def chunk_rows(vectors: VectorStore, document_id: int) -> int:
    return int(await vectors.store.fetchval("SELECT COUNT(*) FROM knowledge_chunks WHERE document_id = ?",
                                            (document_id,)))


async def test_a_guild_never_sees_another_guilds_knowledge(vectors: VectorStore) -> None:
    a = await add(vectors, GUILD_A, "rules.md", ("a-rules", angle(0)), ("a-faq", angle(30)))
    b = await add(vectors, GUILD_B, "rules.md", ("b-rules", angle(0)), ("b-faq", angle(10)))

    found_a = await vectors.search(GUILD_A, angle(0), limit=10)
    found_b = await vectors.search(GUILD_B, angle(0), limit=10)
    assert [hit.text for hit in found_a] == ["a-rules", "a-faq"]
    assert [hit.text for hit in found_b] == ["b-rules", "b-faq"]
    assert {hit.document_id for hit in found_a} == {a}
    assert await vectors.search(GUILD_C, angle(0)) == []

    # the same source name is two documents, one per guild; neither guild can reach the other's
    assert (await vectors.find(GUILD_A, "rules.md")).id == a  # type: ignore[union-attr]
    assert (await vectors.find(GUILD_B, "rules.md")).id == b  # type: ignore[union-attr]
    assert await vectors.find(GUILD_C, "rules.md") is None
    assert [doc.id for doc in await vectors.list(GUILD_A)] == [a]
    assert await vectors.list(GUILD_C) == []
    assert await vectors.remove(GUILD_B, a) is None  # B cannot remove A's document by its id
    assert [hit.text for hit in await vectors.search(GUILD_A, angle(0), limit=10)] == ["a-rules", "a-faq"]
    assert await chunk_rows(vectors, a) == 2


async def test_hits_are_ordered_by_cosine_similarity_and_limited(vectors: VectorStore) -> None:
    await add(vectors, GUILD_A, "guide.md", ("far", angle(80)), ("exact", angle(0)), ("near", angle(20)),
              ("opposite", angle(180)), ("middle", angle(45)))

    hits = await vectors.search(GUILD_A, [2.0, 0.0, 0.0], limit=3)  # length does not matter, direction does

    assert [hit.text for hit in hits] == ["exact", "near", "middle"]
    assert [round(hit.score, 4) for hit in hits] == [1.0, round(math.cos(math.radians(20)), 4),
                                                    round(math.cos(math.radians(45)), 4)]
    assert hits[1].heading == "§near" and hits[1].chunk_index == 2
    assert hits[0].source == "guide.md" and hits[0].title == "Doc"
    everything = await vectors.search(GUILD_A, angle(0), limit=10)
    assert [hit.text for hit in everything][-1] == "opposite"
    assert everything[-1].score == pytest.approx(-1.0, abs=1e-5)


async def test_re_adding_a_document_replaces_its_chunks(vectors: VectorStore) -> None:
    first = await vectors.replace_document(
        GUILD_A, "faq.md", "FAQ", "old", [ChunkToStore("old one", angle(0)), ChunkToStore("old two", angle(5)),
                                          ChunkToStore("old three", angle(10))], added_by=ADMIN, tokens=30,
    )
    other = await add(vectors, GUILD_A, "other.md", ("other", angle(60)))

    second = await vectors.replace_document(
        GUILD_A, "faq.md", "FAQ v2", "new", [ChunkToStore("new one", angle(1)), ChunkToStore("new two", angle(3))],
        added_by=ADMIN + 1, tokens=20,
    )

    assert second.id == first.id
    assert (second.title, second.content_hash, second.chunk_count, second.tokens, second.added_by) == (
        "FAQ v2", "new", 2, 20, ADMIN + 1)
    assert await vectors.find(GUILD_A, "faq.md") == second
    texts = [hit.text for hit in await vectors.search(GUILD_A, angle(0), limit=10)]
    assert texts == ["new one", "new two", "other"]
    assert await chunk_rows(vectors, first.id) == 2
    assert await chunk_rows(vectors, other) == 1
    assert {doc.source for doc in await vectors.list(GUILD_A)} == {"faq.md", "other.md"}


async def test_removing_a_document_deletes_its_vectors(vectors: VectorStore) -> None:
    gone = await add(vectors, GUILD_A, "old.md", ("old", angle(0)), ("older", angle(5)))
    kept = await add(vectors, GUILD_A, "kept.md", ("kept", angle(50)))

    removed = await vectors.remove(GUILD_A, gone)

    assert removed is not None and removed.source == "old.md" and removed.chunk_count == 2
    assert await chunk_rows(vectors, gone) == 0
    assert [hit.text for hit in await vectors.search(GUILD_A, angle(0), limit=10)] == ["kept"]
    assert [doc.id for doc in await vectors.list(GUILD_A)] == [kept]
    assert await vectors.find(GUILD_A, "old.md") is None
    assert await vectors.remove(GUILD_A, gone) is None
    await vectors.remove(GUILD_A, kept)
    assert await vectors.search(GUILD_A, angle(0)) == []


async def test_a_vector_of_another_length_is_refused_clearly(vectors: VectorStore) -> None:
    await add(vectors, GUILD_A, "doc.md", ("three", angle(0)))

    with pytest.raises(DimensionMismatch) as refused:
        await vectors.search(GUILD_A, [1.0, 0.0, 0.0, 0.0])
    assert "3 dimensions" in refused.value.user_message() and "4" in refused.value.user_message()
    assert "add the documents again" in refused.value.user_message()
    assert await vectors.search(GUILD_B, [1.0, 0.0, 0.0, 0.0]) == []  # another guild's length is not a reason

    with pytest.raises(DimensionMismatch):
        await vectors.replace_document(GUILD_A, "mixed.md", "Mixed", "h",
                                       [ChunkToStore("a", [1.0, 0.0]), ChunkToStore("b", [1.0, 0.0, 0.0])],
                                       added_by=ADMIN, tokens=1)
    assert await vectors.find(GUILD_A, "mixed.md") is None

    # a new model's document (another length) is stored; each length searches its own chunks
    await add(vectors, GUILD_A, "new-model.md", ("four", [0.0, 1.0, 0.0, 0.0]))
    assert [hit.text for hit in await vectors.search(GUILD_A, [0.0, 1.0, 0.0, 0.0])] == ["four"]
    assert [hit.text for hit in await vectors.search(GUILD_A, angle(0))] == ["three"]


async def test_vectors_without_a_direction_are_refused(vectors: VectorStore) -> None:
    with pytest.raises(ValueError, match="zero"):
        await vectors.replace_document(GUILD_A, "z.md", "Z", "h", [ChunkToStore("zero", [0.0, 0.0])],
                                       added_by=ADMIN, tokens=1)
    with pytest.raises(ValueError, match="zero"):
        await vectors.search(GUILD_A, [0.0, 0.0, 0.0])
    with pytest.raises(ValueError):
        await vectors.replace_document(GUILD_A, "e.md", "E", "h", [], added_by=ADMIN, tokens=0)


async def test_every_path_ranks_like_a_plain_cosine_over_real_sized_vectors(vectors: VectorStore) -> None:
    rng = np.random.default_rng(19)
    dims = 384
    matrix = rng.normal(size=(60, dims))
    await vectors.replace_document(
        GUILD_A, "big.md", "Big", "h", [ChunkToStore(f"c{i}", list(row)) for i, row in enumerate(matrix)],
        added_by=ADMIN, tokens=600,
    )
    await vectors.replace_document(  # the other guild holds the very vectors closest to the query
        GUILD_B, "big.md", "Big", "h", [ChunkToStore(f"b{i}", list(row)) for i, row in enumerate(matrix[:5])],
        added_by=ADMIN, tokens=50,
    )
    query = matrix[7] + rng.normal(scale=0.5, size=dims)

    hits = await vectors.search(GUILD_A, list(query), limit=5)

    cosine = (matrix @ query) / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))
    expected = np.argsort(-cosine)[:5]
    assert [hit.text for hit in hits] == [f"c{i}" for i in expected]
    assert [hit.score for hit in hits] == pytest.approx([float(cosine[i]) for i in expected], abs=1e-4)
    assert hits[0].text == "c7"

