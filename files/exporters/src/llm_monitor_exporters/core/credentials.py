"""Secrets (API keys) from a file or an environment variable: never from the command line, never logged."""

from __future__ import annotations

import os
from pathlib import Path

from llm_monitor_exporters.core.config import ConfigError


class Secret:
    """A secret string whose repr/str never shows the value."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<redacted>, from {self.source})"

    __str__ = __repr__


def load_secret(where: str, *, file: str | None, env: str | None, required: bool = True) -> Secret | None:
    """Read a secret from ``file`` (first line, stripped) or else from the environment variable ``env``."""
    if file:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read secret file {file}: {exc.strerror or exc}") from exc
        value = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not value:
            raise ConfigError(f"{where}: secret file {file} is empty")
        return Secret(value, f"file {file}")
    if env:
        value = os.environ.get(env, "").strip()
        if value:
            return Secret(value, f"environment variable {env}")
        if required:
            raise ConfigError(f"{where}: environment variable {env} is not set or empty (and no file given)")
        return None
    if required:
        raise ConfigError(f"{where}: no secret configured (set a *_file path or a *_env variable name)")
    return None
