"""One process of the two-process budget test (tests/test_quotas_processes.py).

    python -m tests.budget_racer POSTGRES_URL COUNT FIRST_USER

Opens its own Store on the URL, prints ``ready``, waits for a line on stdin (the test writes ``go``
to every racer at once), fires COUNT concurrent chat reservations in guild 1 by members
FIRST_USER…, settles every granted one with 10 tokens and prints one JSON line:
``{"granted": g, "refused": r, "errors": ["…"]}``.
"""

from __future__ import annotations

import asyncio
import json
import sys

from bot.app.settings import Settings
from bot.budgets.rules import BudgetExceeded, Feature, Requester
from bot.budgets.service import BudgetService
from bot.storage.store import Store

GUILD = 1
TOKENS_USED = 10


async def race(url: str, count: int, first_user: int) -> dict[str, object]:
    store = Store(url=url)
    await store.open()
    try:
        quotas = BudgetService(store, Settings())  # the guild's limit is in the database, set by the test
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        outcomes = await asyncio.gather(
            *(quotas.reserve(Requester(GUILD, 10, first_user + i % 37), Feature.CHAT, tokens=50)
              for i in range(count)),
            return_exceptions=True,
        )
        granted = [r for r in outcomes if not isinstance(r, BaseException)]
        errors = [repr(r) for r in outcomes if isinstance(r, BaseException) and not isinstance(r, BudgetExceeded)]
        await asyncio.gather(*(quotas.settle(r, usage_tokens=TOKENS_USED) for r in granted))
        refused = sum(1 for r in outcomes if isinstance(r, BudgetExceeded))
        return {"granted": len(granted), "refused": refused, "errors": errors}
    finally:
        await store.close()


def main() -> None:
    url, count, first_user = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(asyncio.run(race(url, count, first_user))), flush=True)


if __name__ == "__main__":
    main()
