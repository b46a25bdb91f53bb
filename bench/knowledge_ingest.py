"""Knowledge ingest: how long adding a 100-page PDF takes, stage by stage, and end to end.

The PDF is made here with pypdf (each page some 40 lines of prose, as a manual's page has), so every
run reads the same document. Stages are timed alone (text extraction with pypdf, chunking), then the
whole ``KnowledgeService.add_file`` as /knowledge add runs it: extraction in a thread, chunking, the
embeddings through the real ``GatewayClient`` against the OpenAI-surface emulator (in this process:
its hashed bag-of-words vectors cost a little CPU too), the embedding tokens reserved and settled,
and the chunks stored by the real ``VectorStore`` in a SQLite file (sqlite-vec). Each round adds the
PDF under a new name, so nothing is skipped as unchanged.

    python bench/knowledge_ingest.py [--pages 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.app.settings import Settings  # noqa: E402
from bot.budgets.rules import Requester  # noqa: E402
from bot.budgets.service import BudgetService  # noqa: E402
from bot.knowledge.chunking import chunk_text  # noqa: E402
from bot.knowledge.extract import extract  # noqa: E402
from bot.knowledge.service import KnowledgeService  # noqa: E402
from bot.storage.store import Store  # noqa: E402
from gateway_client import GatewayClient, GatewayConfig  # noqa: E402
from sandbox.gateways import GatewayEmulator  # noqa: E402
from tests.knowledge_samples import make_pdf  # noqa: E402

WORDS = ("backup restore server member channel role permission message thread answer question policy "
         "schedule event moderator warning account password settings invite voice stage forum").split()


def manual(pages: int) -> bytes:
    """A ``pages``-page PDF: a section title and about 40 lines of sentences on each page."""
    body = []
    for p in range(pages):
        lines = [f"Section {p + 1}: the {WORDS[p % len(WORDS)]} guide"]
        for i in range(40):
            w = [WORDS[(p * 7 + i * 3 + k) % len(WORDS)] for k in range(9)]
            lines.append(f"Line {i + 1} says the {w[0]} and the {w[1]} follow the {w[2]} {w[3]} rules of {w[4]}.")
        body.append(lines)
    return make_pdf(body, title="Server operations manual")


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


async def main(pages: int, rounds: int) -> None:
    data = manual(pages)
    extracted, t_extract = timed(extract, "manual.pdf", data, "application/pdf")
    settings = Settings()
    chunks, t_chunk = timed(chunk_text, extracted.text, chunk_chars=settings.knowledge.chunk_chars,
                            overlap_chars=settings.knowledge.overlap_chars)
    print(f"{pages}-page PDF: {len(data) / 1024:.0f} KiB, {len(extracted.text):,} characters, {len(chunks)} chunks")
    print(f"  extraction (pypdf)  {t_extract * 1000:8.1f} ms")
    print(f"  chunking            {t_chunk * 1000:8.1f} ms")

    async with GatewayEmulator("openai") as emu:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(gateway={"profile": "openai", "base_url": emu.root_url, "api_key": emu.api_key},
                                storage={"path": str(Path(tmp) / "bench.db")},
                                knowledge={"max_document_chunks": 20_000})
            store = Store(settings.storage.path)
            await store.open()
            gateway = GatewayClient(GatewayConfig(profile="openai", base_url=emu.root_url, api_key=emu.api_key))
            await gateway.start()
            quotas = BudgetService(store, settings)
            service = KnowledgeService(settings, store, gateway, quotas, cdn_http=lambda: None)  # type: ignore[arg-type,return-value]
            await service.start()
            requester = Requester(1000, 2000, 3000)
            times = []
            try:
                for r in range(rounds):
                    start = time.perf_counter()
                    result = await service.add_file(requester, filename=f"manual-{r}.pdf", data=data,
                                                    content_type="application/pdf")
                    times.append(time.perf_counter() - start)
                    assert result.document.chunk_count == len(chunks)
                tokens = result.document.tokens
            finally:
                await gateway.close()
                await store.close()
    print(f"  add_file end to end (extract, chunk, {len(chunks)} embeddings in "
          f"{-(-len(chunks) // 64)} requests, {tokens:,} tokens charged, stored with {service.vectors.backend}):")
    print(f"    median {statistics.median(times):.2f} s, min {min(times):.2f} s, max {max(times):.2f} s "
          f"over {rounds} rounds")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.pages, args.rounds))
