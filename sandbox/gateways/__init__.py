"""Local emulators of the five AI gateways Gatecord supports, written from their documents.

    from sandbox.gateways import GatewayEmulator, PROFILES
    async with GatewayEmulator("digicord") as emu:
        emu.api_base  # OpenAI SDK base_url; emu.root_url goes into settings gateway.base_url

Module map: ``profiles`` (per-gateway surface and the choices made where documents are silent),
``errors`` (error shapes), ``models`` (catalogues and listing shapes), ``answers`` (deterministic
fake output), ``faults`` (fault injection), ``images`` (Pillow), ``audio`` (fake speech),
``chat``/``media``/``meta`` (handlers), ``app`` (server), ``__main__`` (standalone).
"""

from .answers import FIXED_SENTENCE, expected_reply, expected_thought
from .app import GatewayEmulator, RecordedRequest
from .faults import FaultInjector
from .models import CATALOGUES, MODEL_ROLES, ModelInfo
from .profiles import PROFILES, default_api_key

__all__ = [
    "CATALOGUES",
    "FIXED_SENTENCE",
    "MODEL_ROLES",
    "PROFILES",
    "FaultInjector",
    "GatewayEmulator",
    "ModelInfo",
    "RecordedRequest",
    "default_api_key",
    "expected_reply",
    "expected_thought",
]
