"""Knowledge search latency (``VectorStore.search``, what ``search_knowledge`` waits on) on every path.

One guild holds 10,000 chunks (100 documents of 100), another guild 10,000 more beside them (every query
filters them out); random unit vectors of ``--dims`` dimensions (1536: OpenAI's text-embedding-3-small).
Each path answers the same ``--searches`` queries (top 5), one at a time; p50/p99 in milliseconds.

- sqlite-vec: SQLite with the extension loaded (needs a Python whose sqlite3 loads extensions);
- SQLite exact: the same file, ranked with numpy;
- pgvector: a PostgreSQL server this script starts (tests/pg_server.py) with the extension;
- PostgreSQL exact: the same database, ranked with numpy.

    python bench/knowledge_search.py [--chunks 10000] [--dims 1536] [--searches 200] [--skip-postgres]

Measured on the 2-core development machine, shared with other work (10,000 + 10,000 chunks, 1536 dims,
50 searches): sqlite-vec p50 204 ms / p99 318 ms; SQLite exact 431 / 1504 ms; pgvector 481 / 1305 ms
(each row's real[] cast to vector per query); PostgreSQL exact 2595 / 5122 ms (the server's array_send of
every element dominates).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bot.knowledge.store import ChunkToStore, VectorStore  # noqa: E402
from bot.storage.store import Store  # noqa: E402
from tests.pg_server import PgServer, PgUnavailable  # noqa: E402

GUILD, OTHER_GUILD = 1001, 2002
PER_DOCUMENT = 100


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def unit_rows(rng: np.random.Generator, count: int, dims: int) -> np.ndarray:
    rows = rng.normal(size=(count, dims)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


async def fill(vectors: VectorStore, chunks: int, dims: int, seed: int) -> float:
    """Both guilds' documents; returns the seconds it took."""
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for guild in (GUILD, OTHER_GUILD):
        for first in range(0, chunks, PER_DOCUMENT):
            rows = unit_rows(rng, min(PER_DOCUMENT, chunks - first), dims)
            await vectors.replace_document(
                guild, f"doc-{first // PER_DOCUMENT}.md", f"Document {first // PER_DOCUMENT}", "hash",
                [ChunkToStore(f"chunk {first + i}", row.tolist(), heading=None) for i, row in enumerate(rows)],
                added_by=1, tokens=0,
            )
    return time.perf_counter() - started


async def measure(name: str, vectors: VectorStore, queries: np.ndarray) -> str:
    await vectors.open()
    await vectors.search(GUILD, queries[0].tolist())  # warm-up (caches, prepared statements)
    times: list[float] = []
    for query in queries:
        vector = query.tolist()
        started = time.perf_counter()
        hits = await vectors.search(GUILD, vector, limit=5)
        times.append((time.perf_counter() - started) * 1000)
        assert len(hits) == 5 and all(hit.text.startswith("chunk ") for hit in hits)
    return (f"{name:<18} backend={vectors.backend:<10} p50 {percentile(times, 50):8.1f} ms"
            f"   p99 {percentile(times, 99):8.1f} ms   ({len(times)} searches)")


async def run_store(label: str, store: Store, args: argparse.Namespace, queries: np.ndarray) -> list[str]:
    await store.open()
    try:
        loaded = await fill(VectorStore(store, exact=True), args.chunks, args.dims, seed=19)
        lines = [f"{label}: {2 * args.chunks} chunks of {args.dims} dims stored in {loaded:.1f} s"]
        indexed = VectorStore(store)
        lines.append(await measure(f"{label} extension", indexed, queries))
        if indexed.backend == "exact":
            lines.append(f"  (no extension: {indexed.exact_reason})")
        lines.append(await measure(f"{label} exact", VectorStore(store, exact=True), queries))
        return lines
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10_000, help="chunks in each of the two guilds")
    parser.add_argument("--dims", type=int, default=1536)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    queries = unit_rows(np.random.default_rng(7), args.searches, args.dims)

    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gatecord-knowledge-") as folder:
        lines += await run_store("SQLite", Store(Path(folder) / "bench.db"), args, queries)
    if not args.skip_postgres:
        try:
            server = PgServer.start()
        except PgUnavailable as exc:
            lines.append(f"PostgreSQL: not run ({exc})")
        else:
            with server:
                lines += await run_store("PostgreSQL", Store(url=server.create_database("bench")), args, queries)
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
