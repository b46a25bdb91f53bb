"""The budget names chat and vision code import from here (kept so they need not change at once).

New code imports from the module that owns each name: ``bot.budgets.service`` (``BudgetService``,
reached as ``bot.quotas``), ``bot.budgets.engine`` (``Reservation``), ``bot.budgets.rules``
(``Feature``, ``Requester``, ``BudgetExceeded``) and ``bot.budgets.reports``.
"""

from __future__ import annotations

from bot.budgets.engine import MIN_PARTIAL_TOKENS, Reservation
from bot.budgets.reports import BudgetLine, GuildLimits, UsageLimits, describe_line
from bot.budgets.rules import KINDS, BudgetExceeded, Feature, Requester
from bot.budgets.service import BudgetService
from bot.guilds.audit import InvalidSetting

__all__ = [
    "BudgetExceeded",
    "BudgetLine",
    "BudgetService",
    "Feature",
    "GuildLimits",
    "InvalidSetting",
    "KINDS",
    "MIN_PARTIAL_TOKENS",
    "Requester",
    "Reservation",
    "UsageLimits",
    "describe_line",
]
