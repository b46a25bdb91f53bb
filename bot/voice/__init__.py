"""Voice messages: audio in (transcription) and out (speech as a Discord voice message)."""
