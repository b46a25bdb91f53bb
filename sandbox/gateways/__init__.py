"""Local emulators of the five AI gateways Gatecord supports, written from their documents.

    from sandbox.gateways import GatewayEmulator, PROFILES, expected_reply
    async with GatewayEmulator("digicord") as emu:   # port 0, 127.0.0.1
        emu.root_url      # goes into settings gateway.base_url (every profile)
        emu.api_base      # root + "/v1" ("/api/v1" for digicord): an OpenAI SDK's base_url
        emu.api_key       # aicredits: deterministic "sk-" + 64 hex; others "test-<profile>-key"
        emu.profile       # the profile name; emu.spec holds its Profile description
        emu.default_chat_model / default_vision_model / default_image_model  ("" if none)
        emu.requests      # RecordedRequest(method, path, query, headers (auth redacted), json,
                          #                 time (monotonic), status, form, body_size)
        emu.faults        # FaultInjector: fail_next, html_error_next, invalid_json_next, slow_next,
                          # cut_stream_next, error_in_stream_next, revoke_key, set_budget, reset
        emu.queue_reply("exact text", chunk_size=5, reasoning=None, cut_at_max_tokens=False)
        emu.stream_chunk_count = 2000; emu.keepalive_comments = True; emu.chunk_delay = 0.0
        emu.stream_tps = 40.0       # stream answers in token-sized pieces, 1/40 s apart (default 0: at once,
                                    # 8 pieces); the wait is emu.sleep (asyncio.sleep; a test may pass a gate)
        emu.demo_answers = True     # the sandbox's longer answer (answers.demo_reply), long enough to see stream
        emu.context_overflow = "error"  # or "empty": the context_2k model past its window (see models)
        emu.sent_data     # digicord /send-data bodies accepted
        emu.received_audio  # aicredits/openai: every transcription upload's exact bytes (JSON or multipart)
        # openai only: video jobs, music, image edits (see media_jobs for the shapes)
        emu.video_jobs    # job id -> VideoJobState(prompt, model, duration, width, height, status, progress,
                          #                         posts=1, polls, cancelled, url, billed_seconds)
        emu.video_polls_to_complete = 4    # status GETs until a job completes (queued → 25/50/75 → done)
        emu.video_seconds_to_complete = None  # or e.g. 20.0: jobs follow the clock instead of the polls
        emu.faults.video_fails_next(message="…"); emu.faults.video_never_finishes(); emu.faults.expire_media()

Videos are real H.264+AAC MP4s of the asked size and length (320x180 unless asked), music real MP3
(or WAV), edits the input image recoloured under the mask (``media_render``). Speech is real audio
(PyAV) in the asked format; ``audio.synthesize(text, fmt)`` makes the same bytes for tests, and
``audio.transcribe(data, fmt)`` is what the transcription endpoint answers.

Answers are deterministic (see :mod:`.answers`): ``expected_reply(last_user_text)``, vision
``I see a WxH image, mostly <name> (#rrggbb).``, reasoning ``<think>`` blocks or ``reasoning``
deltas. ``MODEL_ROLES[profile]`` names a model per role (chat, vision, non_vision, reasoning,
reasoning_field, small (1024-token context), image, embedding, tts, stt, fallback, context_2k
(2,048 tokens for prompt + max_tokens, on aiproxy and openai), video, music, image_edit (openai)).

Where the documents are silent the choices are written down in the module that makes them:
``profiles`` (auth, public endpoints, headers), ``errors`` (error types/codes per profile),
``models`` (listing shapes), ``media`` (FLUX and image answers), ``media_jobs`` (video jobs, music,
image edits), ``meta`` (aicordcloud ``GET /``, aicredits credits), ``relay`` (digicord ``/send-data`` answer), ``chat`` (SSE framing),
``faults`` (which calls a fault matches). Requests the emulator makes to itself (vision fetching
an image it generated) are recorded too.

Run one alone: ``python -m sandbox.gateways --profile aicredits --port 0`` → ``READY <url> <masked key>``.
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
