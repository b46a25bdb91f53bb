"""The import contract: cogs -> bot -> gateway_client, never back; sandbox reaches bot through its entry points.

Every ``import``/``from … import`` in the source (also inside functions and ``if TYPE_CHECKING:``, relative
ones resolved) and every ``importlib.import_module("literal")`` counts. A failure names the file, the
line, the import and the rule it breaks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "cogs", "gateway_client", "sandbox")

#: The modules of bot/ that sandbox/ may import (besides package roots, i.e. an ``__init__``).
BOT_ENTRY_POINTS = frozenset({"bot.app.factory", "bot.app.cli", "bot.app.settings"})


@dataclass(frozen=True)
class Rule:
    """Modules under ``package`` must not import what ``forbids`` says no to."""

    package: str
    why: str

    def forbids(self, target: str, packages: frozenset[str]) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class Never(Rule):
    """Never import any of ``banned`` (or their submodules)."""

    banned: tuple[str, ...] = ()

    def forbids(self, target: str, packages: frozenset[str]) -> bool:
        return any(target == b or target.startswith(b + ".") for b in self.banned)


@dataclass(frozen=True)
class OnlyThrough(Rule):
    """Import ``guarded`` only through ``allowed`` modules or its package roots."""

    guarded: str = ""
    allowed: frozenset[str] = frozenset()

    def forbids(self, target: str, packages: frozenset[str]) -> bool:
        if target != self.guarded and not target.startswith(self.guarded + "."):
            return False
        return target not in self.allowed and target not in packages


RULES: tuple[Rule, ...] = (
    Never("gateway_client", "gateway_client is the bottom layer: it imports neither bot, cogs, sandbox nor discord",
          banned=("bot", "cogs", "sandbox", "discord")),
    Never("bot", "bot/ holds the use cases and never imports the Discord adapters in cogs/", banned=("cogs",)),
    OnlyThrough("sandbox", "sandbox/ reaches bot/ only through bot.app.factory, bot.app.cli, bot.app.settings "
                "and package roots", guarded="bot", allowed=BOT_ENTRY_POINTS),
)


@dataclass(frozen=True)
class Tree:
    """The modules and packages (dotted names) of the checked source tree."""

    modules: frozenset[str]
    packages: frozenset[str]

    @classmethod
    def scan(cls, root: Path) -> Tree:
        modules: set[str] = set()
        packages: set[str] = set()
        for top in PACKAGES:
            for path in (root / top).rglob("*.py"):
                name = module_name(path.relative_to(root))
                modules.add(name)
                if path.name == "__init__.py":
                    packages.add(name)
        return cls(frozenset(modules), frozenset(packages))


def module_name(relpath: Path) -> str:
    parts = list(relpath.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool, tree: Tree) -> Iterator[tuple[int, str]]:
    """(line, dotted module) for every module ``source`` imports; ``from X import name`` yields ``X.name``
    when that is a module of the tree (``from bot.chat import answer`` imports ``bot.chat.answer``)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)] if package else []
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield node.lineno, sub if sub in tree.modules else base
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            yield node.lineno, node.args[0].value


def violations_in(relpath: str, source: str, tree: Tree, rules: tuple[Rule, ...] = RULES) -> list[str]:
    """One line per import of ``source`` (the file at ``relpath``) that a rule forbids."""
    path = Path(relpath)
    module = module_name(path)
    out = []
    for rule in rules:
        if module != rule.package and not module.startswith(rule.package + "."):
            continue
        for line, target in imported_modules(source, module, path.name == "__init__.py", tree):
            if rule.forbids(target, tree.packages):
                out.append(f"{relpath}:{line} imports {target}: {rule.why}")
    return out


def all_violations(root: Path = ROOT) -> list[str]:
    tree = Tree.scan(root)
    out: list[str] = []
    for top in PACKAGES:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            out += violations_in(rel, path.read_text(encoding="utf-8"), tree)
    return out


# ------------------------------------------------------------------------------------------ the contract


def test_the_code_keeps_the_import_contract() -> None:
    found = all_violations()
    assert not found, "import contract broken:\n" + "\n".join(found)


def test_the_contract_sees_every_package() -> None:
    tree = Tree.scan(ROOT)
    for top in PACKAGES:
        assert top in tree.packages
    assert BOT_ENTRY_POINTS <= tree.modules  # an entry point that was renamed must be renamed here too


# ------------------------------------------------------------------------------------------ it can fail

FAKE_TREE = Tree(
    modules=frozenset({"bot", "bot.app", "bot.app.factory", "bot.app.cli", "bot.app.settings", "bot.chat",
                       "bot.chat.answer", "cogs", "cogs.chat", "gateway_client", "gateway_client.http",
                       "sandbox", "sandbox.launcher"}),
    packages=frozenset({"bot", "bot.app", "bot.chat", "cogs", "gateway_client", "sandbox"}),
)


@pytest.mark.parametrize("relpath, source, expected", [
    ("gateway_client/fake.py", "import discord\n", "gateway_client/fake.py:1 imports discord: gateway_client is"),
    ("gateway_client/fake.py", "from discord.http import Route\n", "gateway_client/fake.py:1 imports discord.http"),
    ("gateway_client/fake.py", "import os\n\ndef f():\n    from bot.chat import answer\n",
     "gateway_client/fake.py:4 imports bot.chat.answer"),
    ("bot/chat/fake.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cogs.chat import ChatCog\n",
     "bot/chat/fake.py:3 imports cogs.chat: bot/ holds the use cases"),
    ("bot/fake.py", "import importlib\nimportlib.import_module('cogs.chat')\n", "bot/fake.py:2 imports cogs.chat"),
    ("sandbox/fake.py", "from bot.chat.answer import run_turn\n", "sandbox/fake.py:1 imports bot.chat.answer: sand"),
    ("sandbox/fake.py", "from bot.chat import answer\n", "sandbox/fake.py:1 imports bot.chat.answer"),
    ("sandbox/fake.py", "import bot.chat.answer as a\n", "sandbox/fake.py:1 imports bot.chat.answer"),
])
def test_a_forbidden_import_is_named_with_its_file_and_line(relpath: str, source: str, expected: str) -> None:
    found = violations_in(relpath, source, FAKE_TREE)
    assert len(found) == 1 and found[0].startswith(expected), found


@pytest.mark.parametrize("relpath, source", [
    ("sandbox/fake.py", "from bot.app.factory import create_bot\nfrom bot.app.settings import Settings\n"),
    ("sandbox/fake.py", "from bot.app import cli\nimport bot.app.cli\nfrom bot import app\n"),
    ("sandbox/fake.py", "from bot.chat import ChatService\n"),  # a package root's public name
    ("cogs/chat.py", "from bot.chat.answer import run_turn\nfrom gateway_client import GatewayClient\n"),
    ("bot/chat/answer.py", "from ..app import factory\nfrom gateway_client.http import Transport\nimport discord\n"),
    ("gateway_client/http.py", "from .retry import call_with_retries\nimport aiohttp\n"),
])
def test_allowed_imports_pass(relpath: str, source: str) -> None:
    assert violations_in(relpath, source, FAKE_TREE) == []


def test_the_failure_message_lists_every_offender() -> None:
    found = violations_in("gateway_client/fake.py", "import discord\nfrom cogs import chat\n", FAKE_TREE)
    why = "gateway_client is the bottom layer: it imports neither bot, cogs, sandbox nor discord"
    assert found == [f"gateway_client/fake.py:1 imports discord: {why}",
                     f"gateway_client/fake.py:2 imports cogs.chat: {why}"]


def test_a_tree_with_a_backward_import_fails_the_scan(tmp_path: Path) -> None:
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "bot" / "chat").mkdir()
    (tmp_path / "bot" / "chat" / "__init__.py").write_text("")
    (tmp_path / "bot" / "chat" / "answer.py").write_text('"""A turn."""\n\nfrom cogs.chat import reply\n')
    (tmp_path / "cogs" / "chat.py").write_text("from bot.chat.answer import run_turn\n")
    assert all_violations(tmp_path) == [
        "bot/chat/answer.py:3 imports cogs.chat: bot/ holds the use cases and never imports the Discord adapters "
        "in cogs/"]
