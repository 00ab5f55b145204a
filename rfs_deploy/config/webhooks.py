"""A service's webhooks (``services.<name>.webhooks``): event webhooks and confirm webhooks.

An ``event`` webhook receives one JSON document per deployment event (or a Slack-compatible
message, ``format: slack``); a ``confirm-*`` webhook is asked before a step and the step runs only
once it answers 2xx (docs/webhooks.md). The URL and the header values may be Pulumi secrets
(``{secure: ...}``): they are :class:`pydantic.SecretStr` here, and never written anywhere.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator

from rfs_deploy.config.base import MAX_DURATION, Duration, Int, Model
from rfs_deploy.config.secrets import MASKED, SAVED_PLACEHOLDER, locked_hint, remember
from rfs_deploy.errors import ConfigError

WebhookType = Literal["event", "confirm-rollout", "confirm-traffic-increase", "confirm-promotion"]
#: The confirm webhooks, in the order they are asked before one step.
CONFIRM_TYPES: tuple[WebhookType, ...] = ("confirm-rollout", "confirm-traffic-increase", "confirm-promotion")
_URL = re.compile(r"https?://[^\s/?#@]+(?:@[^\s/?#@]+)?(?:[/?#]\S*)?")
_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")
DEFAULT_RETRIES = 5
DEFAULT_INTERVAL = 60
DEFAULT_DEADLINE = 3600
#: Keys only a confirm webhook takes, and keys only an event webhook takes.
_CONFIRM_ONLY = {"interval": "interval", "deadline": "deadline"}
_EVENT_ONLY = {"format": "format", "retries": "retries"}


def _masked(value: str) -> bool:
    return value in (MASKED, SAVED_PLACEHOLDER)


class Webhook(Model):
    """One webhook of a service."""

    #: Names the webhook in logs and records (its URL never appears there).
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    #: ``http(s)://...``; may be a Pulumi secret (a Slack incoming-webhook URL is a credential).
    url: SecretStr = Field(repr=False)
    type: WebhookType = "event"
    #: Sent with every request; values may be Pulumi secrets (a bearer token).
    headers: dict[str, SecretStr] = Field(default_factory=dict, repr=False, max_length=32)
    #: Event webhooks: ``json`` (the event document, the default) or ``slack`` (``{"text": ...}``).
    format: Literal["json", "slack"] | None = None
    #: Seconds one request may take (connect, send, read the answer).
    timeout: Duration = Field(default=10, ge=1, le=300)
    #: Event webhooks: extra attempts for one event after an error or a non-2xx answer
    #: (default :data:`DEFAULT_RETRIES`).
    retries: Int | None = Field(default=None, ge=0, le=20)
    #: Confirm webhooks: seconds between two questions while the answer is not 2xx
    #: (default :data:`DEFAULT_INTERVAL`).
    interval: Duration | None = Field(default=None, ge=1, le=MAX_DURATION)
    #: Confirm webhooks: seconds to keep asking before the deployment holds at the step as at a
    #: gate (``rfs-deploy promote`` then goes on; nothing is rolled back); default
    #: :data:`DEFAULT_DEADLINE`.
    deadline: Duration | None = Field(default=None, ge=1, le=MAX_DURATION)

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if not _masked(text) and (len(text) > 2048 or _URL.fullmatch(text) is None):
            # the URL itself is left out: it may be a secret
            raise ValueError("not an http:// or https:// URL (at most 2048 characters)")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for key, value in headers.items():
            if _HEADER.fullmatch(key) is None:
                raise ValueError(f"{key[:40]!r} is not an HTTP header name")
            if any(c in value.get_secret_value() for c in "\r\n\0"):
                raise ValueError(f"the value of header {key} holds a line break or NUL")
        return headers

    @model_validator(mode="after")
    def _keys_of_its_type(self) -> Webhook:
        wrong = _EVENT_ONLY if self.confirm else _CONFIRM_ONLY
        for field, key in wrong.items():
            if getattr(self, field) is not None:
                kind = "a confirm" if self.confirm else "an event"
                raise ValueError(f"webhook {self.name}: {key} is not a setting of {kind} webhook")
        return self

    @property
    def confirm(self) -> bool:
        return self.type != "event"

    @property
    def body_format(self) -> str:
        return self.format or "json"

    @property
    def max_retries(self) -> int:
        return DEFAULT_RETRIES if self.retries is None else self.retries

    @property
    def ask_interval(self) -> int:
        return DEFAULT_INTERVAL if self.interval is None else self.interval

    @property
    def ask_deadline(self) -> int:
        return DEFAULT_DEADLINE if self.deadline is None else self.deadline

    def secrets(self) -> list[str]:
        """The values to keep out of every log line and error: the URL and the header values
        (a plain URL too: its path is often the credential, as with Slack's)."""
        return [self.url.get_secret_value(), *(v.get_secret_value() for v in self.headers.values())]


def _unique_names(hooks: list[Webhook]) -> list[Webhook]:
    seen: set[str] = set()
    for hook in hooks:
        if hook.name in seen:
            raise ValueError(f"two webhooks are named {hook.name}")
        seen.add(hook.name)
    return hooks


#: ``services.<name>.webhooks``: at most 20, each name once.
WebhookList = Annotated[list[Webhook], AfterValidator(_unique_names), Field(max_length=20)]


def require_webhook_plaintext(service: Any, name: str) -> None:
    """Refuse, in one line naming the key, a service whose webhook URL or header is a secret not
    decrypted here (a deployment would send it); remember the rest for :func:`redact`."""
    for index, hook in enumerate(service.webhooks):
        where = f"rfs-deploy:services.{name}.webhooks[{index}]"
        if _masked(hook.url.get_secret_value()):
            raise ConfigError(f"{where}.url", locked_hint())
        for header, value in hook.headers.items():
            if _masked(value.get_secret_value()):
                raise ConfigError(f"{where}.headers.{header}", locked_hint())
        remember(hook.secrets())
