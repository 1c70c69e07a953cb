"""Structured logging with secrets redacted from every line, whatever code logs them.

Secrets (tokens, passwords, API keys) are registered when configuration is loaded; the filter replaces them in
the message and in every extra field before a handler sees the record.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

REDACTED = "***"
_secrets: tuple[str, ...] = ()  # longest first, so a secret containing another is replaced whole
_lock = threading.Lock()
_STANDARD_ATTRIBUTES = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def register_secret(value: str | None) -> None:
    """Never print ``value`` in a log line again. Short values are ignored: they would redact ordinary words."""
    global _secrets  # noqa: PLW0603 - one registry for the process, read on every log line
    if value and len(value) >= 6:
        with _lock:
            _secrets = tuple(sorted({*_secrets, value}, key=len, reverse=True))


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed with ``extra=``: structured context, logged (and redacted) as such."""
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD_ATTRIBUTES}


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            record.msg = redact(record.getMessage())
            record.args = None
            for key, value in _extras(record).items():
                setattr(record, key, _redact_value(value))
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line with ECS-style keys, for collectors that ingest the connector's own logs."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "@timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": record.getMessage(),
        }
        document.update(_extras(record))
        if record.exc_info:
            document["error.stack_trace"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            document["error.stack_trace"] = record.exc_text
        return json.dumps(document, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{key}={value}" for key, value in _extras(record).items())
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()}"
        line = f"{line} {extras}".rstrip()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        return f"{line}\n{record.exc_text}" if record.exc_text else line


def configure(level: str = "warning", json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "elastic_transport", "urllib3", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    threading.excepthook = _log_thread_crash


def _log_thread_crash(args: threading.ExceptHookArgs) -> None:
    """A crashed background thread is logged (and redacted) like everything else, not dumped raw on stderr."""
    if args.exc_type is SystemExit:
        return
    thread = args.thread.name if args.thread else "?"
    logging.getLogger("connector").error("thread %s crashed: %s", thread, args.exc_type.__name__,
                                         exc_info=args.exc_value)
