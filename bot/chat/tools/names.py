"""The tool names and the ``tools`` channel setting's values ("all", "off" or a comma list)."""

from __future__ import annotations

from typing import Any

__all__ = ["ALL", "DEFAULT", "OFF", "TOOL_NAMES", "enabled_names", "parse_tools_setting"]

#: every function the bot can offer the model, named exactly as the model sees them
TOOL_NAMES: tuple[str, ...] = ("search_knowledge", "generate_image", "create_poll", "read_channel", "speak")
ALL = "all"
OFF = "off"
#: what a channel allows until an admin says otherwise: the server's own knowledge, nothing that acts
DEFAULT = "search_knowledge"


class ToolsSettingError(ValueError):
    """A ``tools`` value that names no known tool; the message is for the admin."""


def parse_tools_setting(value: Any) -> str:
    """``value`` normalised: "all", "off", or the known names it lists, comma-separated, in the usual
    order. Raises ``ToolsSettingError`` naming what is wrong."""
    text = str(value).strip().lower()
    if text in ("", "default"):
        return DEFAULT
    if text in (ALL, "on"):
        return ALL
    if text in (OFF, "none", "false", "no"):
        return OFF
    wanted = [w.strip() for w in text.replace(";", ",").split(",") if w.strip()]
    unknown = [w for w in wanted if w not in TOOL_NAMES]
    if unknown:
        raise ToolsSettingError(
            f"{', '.join(f'`{u}`' for u in unknown[:5])} {'is' if len(unknown) == 1 else 'are'} not a tool; "
            f"use `off`, `all`, or a comma list of: {', '.join(TOOL_NAMES)}.")
    return ",".join(n for n in TOOL_NAMES if n in wanted)


def enabled_names(setting: str) -> tuple[str, ...]:
    """The tools a (normalised) setting enables, before the gateway and the bot have their say."""
    if setting == OFF:
        return ()
    if setting in ("", ALL):
        return TOOL_NAMES
    return tuple(n for n in setting.split(",") if n in TOOL_NAMES)
