"""rfs_deploy's loggers: every record is redacted before it leaves the logger that made it.

rfs-deploy installs no handlers; the program using it does (``logging.basicConfig``, a CI
runner's handler on the root logger). So redaction cannot wait for a handler: each module's
logger, made by :func:`get_logger`, carries :class:`RedactingFilter`, which runs before the
record is handed to any handler, its own or a parent's. A logger's filters do not see the records
of its child loggers, which is why the filter sits on every module's logger rather than on
``rfs_deploy`` alone.

The same filter sits on the logger of httpx, the HTTP client validation and the load probe send
their requests through: it logs every request's URL at INFO, credentials included.

The filter formats the message with its arguments, and the exception or stack the record
carries, into text, and passes that text through the one redactor of
:func:`rfs_deploy.config.secrets.redact`: known secret values and URL passwords become ``***``.
The record then holds only the redacted text (no arguments, no live exception), so no handler or
formatter can reach the original values.
"""

from __future__ import annotations

import logging

from rfs_deploy.config.secrets import redact

__all__ = ["RedactingFilter", "get_logger"]

_FORMATTER = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Redact a record's message, arguments, exception and stack text in place; never drops it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is to see, redacted like the rest
            message = f"{record.msg} (arguments that do not fit the format: {record.args!r})"
        record.msg, record.args = redact(message), None
        if record.exc_info:
            record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the redacting filter attached (once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(_FILTER)
    return logger


#: Loggers of libraries that quote what rfs-deploy sends (httpx: each request's method and URL).
LIBRARY_LOGGERS = ("httpx",)
for _name in LIBRARY_LOGGERS:
    get_logger(_name)
