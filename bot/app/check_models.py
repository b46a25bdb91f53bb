"""``gatecord check``'s model part: is each configured model listed by the gateway, and does it answer?

What is called, and why (each call costs nothing or next to nothing):

* ``chat_model``: a one-token chat completion (``max_tokens`` 1, a two-word prompt).
* ``vision_model`` (when it is another model): the same one-token chat, text only (no image is sent).
* the speech model (``speech_model``, else the profile's default): one short word spoken (billed per
  character).

Not called, only looked up in the gateway's model list: ``image_model`` (every image is paid at a fixed
price), ``transcription_model`` (needs an audio upload, billed by its length, often by the started
minute), ``video_model`` and ``music_model`` (billed by the second of what they make) and
``fallback_models``. Gatecord has no embedding model setting, so nothing is embedded.

A configured model the gateway does not list (where it lists models of that kind) is a problem, and
so is a call that fails. The calls go to the configured gateway with no fallback: a failing model is
reported as failing even where a fallback would have hidden it. ``--no-calls`` skips every call, and
none is made when the gateway answered neither its health probe nor its model list.
"""

from __future__ import annotations

import dataclasses
import difflib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.app.settings import Settings
from gateway_client import ChatMessage, ChatRequest, GatewayClient, GatewayError, ModelInfo, ModelKind

PROMPT = "Say OK."
SPOKEN = "OK"
ANSWER_SHOWN = 40  # characters of an answer shown

#: the model kinds each setting may be listed as (a vision model is a chat model too)
_KINDS: dict[str, frozenset[ModelKind]] = {
    "chat": frozenset({ModelKind.CHAT, ModelKind.VISION}),
    "vision": frozenset({ModelKind.VISION, ModelKind.CHAT}),
    "image": frozenset({ModelKind.IMAGE}),
    "speech": frozenset({ModelKind.AUDIO}),
    "transcription": frozenset({ModelKind.AUDIO}),
    "video": frozenset({ModelKind.VIDEO}),
    "music": frozenset({ModelKind.MUSIC}),
}


@dataclass(frozen=True, slots=True)
class ConfiguredModel:
    setting: str  # "chat_model", "fallback_models" …
    model: str
    kind: str  # a key of _KINDS
    call: str | None  # "chat" or "speech": how it is probed; None: only looked up
    explicit: bool = True  # set in the configuration (a profile default is used, never judged)

    @property
    def label(self) -> str:
        return f"{self.setting} {self.model!r}" + ("" if self.explicit else " (the profile's default)")


def configured_models(settings: Settings, client: GatewayClient) -> list[ConfiguredModel]:
    """The primary gateway's models the configuration uses, in the order ``check`` reports them."""
    g = settings.gateway
    profile = client.profile
    found = [ConfiguredModel("chat_model", g.chat_model, "chat", "chat")] if g.chat_model else []
    if g.vision_model:
        same = g.vision_model == g.chat_model
        found.append(ConfiguredModel("vision_model", g.vision_model, "vision", None if same else "chat"))
    if g.image_model:
        found.append(ConfiguredModel("image_model", g.image_model, "image", None))
    speech = g.speech_model or profile.default_speech_model
    if speech and profile.supports("speech"):
        found.append(ConfiguredModel("speech_model", speech, "speech", "speech", explicit=bool(g.speech_model)))
    elif g.speech_model:  # the voice warnings say the gateway offers no speech
        found.append(ConfiguredModel("speech_model", g.speech_model, "speech", None))
    if g.transcription_model:
        found.append(ConfiguredModel("transcription_model", g.transcription_model, "transcription", None))
    found += [ConfiguredModel(f"{kind}_model", model, kind, None)
              for kind, model in (("video", g.video_model), ("music", g.music_model)) if model]
    found += [ConfiguredModel("fallback_models", m, "chat", None) for m in dict.fromkeys(g.fallback_models) if m]
    return found


def plan_line(models: Sequence[ConfiguredModel], *, calls: bool, reached: bool = True) -> str:
    """The one line printed before any call is made."""
    if not calls:
        return "model calls: none (--no-calls)"
    if not reached:
        return "model calls: none (the gateway answered neither its health probe nor its model list)"
    said = []
    for m in models:
        if m.call == "chat":
            text = "text only, " if m.kind == "vision" else ""
            said.append(f"a 1-token chat ({text}max_tokens 1) on {m.label}")
        elif m.call == "speech":
            said.append(f"{SPOKEN!r} spoken by {m.label}")
    if not said:
        return "model calls: none (no model to call)"
    return f"model calls: {'; '.join(said)} (skip them with --no-calls)"


async def check_models(
    settings: Settings,
    client: GatewayClient,
    listed: Sequence[ModelInfo] | None,
    *,
    calls: bool,
    reached: bool = True,
    out: Callable[[str], None] = print,
) -> int:
    """Print one line per configured model; return the number of problems found.

    ``listed`` is the gateway's model list (``None`` when it could not be read: nothing is judged
    against it). ``reached``: False when neither the health probe nor the model list answered (the
    gateway is unreachable or refuses the key, already counted as problems): no call is made then.
    ``client`` is started; the calls use a client without fallbacks, built from its settings.
    """
    models = configured_models(settings, client)
    out(plan_line(models, calls=calls, reached=reached))
    calls = calls and reached
    by_id = {m.id: m for m in listed or ()}
    prober = GatewayClient(client.config, options=dataclasses.replace(client.options, fallback_models=[]))
    problems = 0
    await prober.start()
    try:
        for m in models:
            info = by_id.get(m.model)
            found, problem = ("listed", False) if info else _unlisted(m, client, listed)
            if problem:
                out(f"  {m.label}: PROBLEM, {found}")
                problems += 1
                continue
            context = f"; context window {info.context_window:,} tokens" if info and info.context_window else ""
            if m.call is None or not calls:
                out(f"  {m.label}: {found}{'' if m.call else _why_not_called(m)}{context}")
                continue
            started = time.perf_counter()
            try:
                said = await (_chat(prober, m.model) if m.call == "chat" else _speak(prober, settings, m.model))
            except GatewayError as exc:
                out(f"  {m.label}: FAILED after {time.perf_counter() - started:.2f} s: {exc} ({type(exc).__name__})")
                problems += 1
                continue
            out(f"  {m.label}: {said} in {time.perf_counter() - started:.2f} s{context}")
    finally:
        await prober.close()
    return problems


def _unlisted(m: ConfiguredModel, client: GatewayClient, listed: Sequence[ModelInfo] | None) -> tuple[str, bool]:
    """What to say of a model the gateway's list does not hold, and whether that is a problem: it is
    when the model was configured and the gateway lists models of its kind."""
    if listed is None:
        return "not looked up (no model list)", False
    if not m.explicit:
        return "not in the gateway's model list under this name (not judged: the profile's default)", False
    ids = [x.id for x in listed if x.kind in _KINDS[m.kind]]
    rules = client.profile.images
    if m.kind == "image" and not ids and rules is not None:
        ids = list(rules.known_models)  # the gateway lists no image models: its documented ones
    if not ids:
        return f"the gateway lists no {m.kind} models", False
    close = difflib.get_close_matches(m.model, ids, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"not in the gateway's model list{hint}", True


def _why_not_called(m: ConfiguredModel) -> str:
    if m.kind == "image":
        return " (not called: every image is paid)"
    if m.kind == "transcription":
        return " (not called: it needs an audio upload, paid by its length)"
    if m.kind in ("video", "music"):
        return f" (not called: every {m.kind} second is paid)"
    if m.setting == "vision_model":
        return " (the chat model's call covers it)"
    return ""


async def _chat(client: GatewayClient, model: str) -> str:
    result = await client.chat(ChatRequest(messages=[ChatMessage.user(PROMPT)], model=model, max_tokens=1))
    text = " ".join(result.text.split())
    if not text:
        return f"answered nothing (finish reason {result.finish_reason or 'not given'})"
    shown = text if len(text) <= ANSWER_SHOWN else text[: ANSWER_SHOWN - 1] + "…"
    return f"answered {shown!r}"


async def _speak(client: GatewayClient, settings: Settings, model: str) -> str:
    profile = client.profile
    formats = tuple(profile.speech_formats)
    wanted = settings.voice.speech_format
    fmt = wanted if not formats or wanted in formats else formats[0]
    voice = settings.gateway.voice or profile.default_voice or (profile.voices[0] if profile.voices else "alloy")
    spoken = await client.speech(SPOKEN, model, voice, fmt)
    return f"spoke {len(spoken.data):,} bytes of {spoken.format}"
