"""The sandbox's ``[secrets] key``: a Fernet key kept in a file next to its database.

Without it the bot cannot store a server's own gateway key, and ``/gateway set`` only explains how to
enable it. The file lives and dies with the database it goes with (``--fresh`` deletes both): a kept
database whose stored keys were encrypted with a lost key would be unreadable. The file is created
with mode 0600 and its content is never printed.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet

KEY_FILE_MODE = 0o600


class SecretsKeyError(Exception):
    """The key file cannot be used; the message names the file, never its content."""


def read_or_create_key(path: Path) -> str:
    """The key kept in ``path``; a new one written there (mode 0600) when there is none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    except FileExistsError:
        return _read(path)
    try:
        os.fchmod(fd, KEY_FILE_MODE)  # whatever the umask
        os.write(fd, key + b"\n")
    finally:
        os.close(fd)
    return key.decode("ascii")


def _read(path: Path) -> str:
    try:
        if path.stat().st_mode & 0o077:  # made by hand, or copied with looser rights: tighten them
            path.chmod(KEY_FILE_MODE)
        text = path.read_text(encoding="ascii").strip()
        Fernet(text.encode("ascii"))
    except (OSError, UnicodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "it does not hold a Fernet key"
        raise SecretsKeyError(
            f"the sandbox's encryption key file {path} cannot be used ({reason}); restore it, or delete it "
            "(servers' own gateways kept in the sandbox database must then be set again with /gateway set)"
        ) from None
    return text


def remove_key(path: Path) -> None:
    """Forget the key (``--fresh``: the database it encrypted for is gone too)."""
    path.unlink(missing_ok=True)
