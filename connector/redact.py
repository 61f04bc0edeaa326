"""Keeps secrets out of everything the connector writes: log records, error text, stored requests."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

MASK = "**********"
FRAGMENT = 8  # this many leading characters of a secret, left at the end of a cut text, are masked too


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        # Each secret as it can appear inside JSON text: raw, and escaped as json.dumps escapes it.
        self._in_json = tuple({form for s in self._secrets for form in (s, json.dumps(s)[1:-1], json.dumps(s, ensure_ascii=False)[1:-1])})

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def truncate(self, value: str, keep: int) -> str:
        """`value` masked, then cut to `keep` characters (noting the full length). Masking first
        means no secret straddles the cut; a text that already ends in the first characters of a
        secret (cut before it reached us) has those masked too, from FRAGMENT characters on."""
        value = self.text(value)
        note = ""
        if len(value) > keep:
            value, note = value[:keep], f"... ({len(value)} characters)"
        return self._mask_tail(value) + note

    def _mask_tail(self, value: str) -> str:
        for secret in self._secrets:
            for size in range(min(len(secret) - 1, len(value)), FRAGMENT - 1, -1):
                if value.endswith(secret[:size]):
                    return value[:-size] + MASK
        return value

    def clean(self, text: str) -> bool:
        """Whether the JSON text `text` (json.dumps's output) holds no secret: then `data` of what it
        encodes is that value itself, and the walk and the comparison are spared. JSON encodes a
        string character by character, so a secret inside any string or key of the value shows in
        the text in one of the forms looked for; a false alarm (a secret of digits in a number)
        only sends the value through `data`."""
        return not any(form in text for form in self._in_json)

    def masked_json(self, value: Any, text: str | None = None) -> tuple[Any, str]:
        """`value` with its secrets masked, and its JSON text. `text` is `json.dumps(value)` if the
        caller has it: kept as it is when it holds no secret, so a payload is encoded once."""
        if text is not None and self.clean(text):
            return value, text
        masked = self.data(value)
        return masked, json.dumps(masked)

    def data(self, value: Any) -> Any:
        """Redact every string inside a JSON-like structure."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value


class RedactingFilter(logging.Filter):
    """Applied to every handler: formats the message once, masks secrets, drops the args."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            try:
                record.msg = record.getMessage()
            except (TypeError, ValueError):
                record.msg = str(record.msg)
            record.args = None
        record.msg = self.redactor.text(str(record.msg))
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            exc.args = tuple(self.redactor.text(str(a)) for a in exc.args)
            record.exc_text = None
        for name in ("remote_id", "error", "message"):
            value = getattr(record, name, None)
            if isinstance(value, str):
                setattr(record, name, self.redactor.text(value))
        return True
