"""Pulumi secrets in stack files: ``secure:`` values, decrypted in memory for the passphrase provider.

``pulumi config set --secret --path 'rfs-deploy:services.api.validation.headers.X-Api-Key' ...``
writes the value as ``{secure: v1:<nonce>:<ciphertext>}`` at that leaf; ``pulumi config set
--secret 'rfs-deploy:tags' '{...}'`` makes the whole top-level value one ``secure`` string (its
plaintext is the JSON text). A mapping with the single key ``secure`` and a string value is a
secret wherever it sits: in a mapping or in a list, at any depth.

Pulumi's passphrase provider (the stack file has ``encryptionsalt: v1:<salt>:<check>`` and no
``secretsprovider`` other than ``passphrase``) derives a 32-byte key with PBKDF2-HMAC-SHA256
(1,000,000 iterations) from the passphrase and the salt; every value is AES-256-GCM under that key
with its own 12-byte nonce, and ``<check>`` is the word ``pulumi`` encrypted the same way, so a
wrong passphrase is known before any value is read. The passphrase comes from
``PULUMI_CONFIG_PASSPHRASE`` (set, even empty) or the file named by
``PULUMI_CONFIG_PASSPHRASE_FILE`` (trimmed), as for the Pulumi CLI.

When the values cannot be decrypted here (no passphrase, or another provider: ``awskms://``,
``azurekeyvault://``, ``gcpkms://``, ``hashivault://``, or Pulumi Cloud's own), each secret
becomes :data:`MASKED`: what only reads the config (``plan``, ``iam-policy``) still works, and
what would send the value (validation) is stopped by :func:`require_plaintext`, naming the key.

Decrypted values live in memory only, as :class:`Revealed` strings: equal to the plaintext for
every use, shown as ``'[secret]'`` by ``repr``, and recognised by :func:`conceal`, which whatever
is written to disk passes its config through.

Text that leaves the process (log records, hook details and output, validation details) goes
through one redactor, :func:`redact`: every secret value this process knows (:func:`known_secrets`:
decrypted values, values handed to :func:`remember`, the values of environment variables whose
names look secret and the passwords of URLs in the environment) becomes ``***``, and so does the
password of every URL written with credentials (``scheme://user:password@host``), known or not.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
import re
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rfs_deploy.errors import ConfigError, InvalidInput

PASSPHRASE_ENV = "PULUMI_CONFIG_PASSPHRASE"
PASSPHRASE_FILE_ENV = "PULUMI_CONFIG_PASSPHRASE_FILE"
#: What a secret that cannot be decrypted here reads as (Pulumi's own mask for hidden values).
MASKED = "[secret]"
#: What a saved sandbox session holds instead of a secret value (it stays in the stack file).
SAVED_PLACEHOLDER = "[secret: not saved in the sandbox session; read from the stack file]"
SECURE = "secure"
_ITERATIONS = 1_000_000
_KEY_BYTES = 32
_NONCE_BYTES = 12
_CHECK_VALUE = "pulumi"
#: What a redacted secret reads as in logs, hook details and output.
REDACTED = "***"
#: Known values shorter than this are not redacted: too short to be a credential, and replacing
#: every "1" or "yes" would make the text unreadable.
MIN_SECRET_LENGTH = 4
#: Environment variable names whose values are treated as secrets in anything reported.
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|PASSPHRASE|KEY|CREDENTIAL", re.IGNORECASE)
#: ...unless the name says the value locates or names the secret rather than being it:
#: ``AWS_SHARED_CREDENTIALS_FILE=/dev/null`` or ``PULUMI_CONFIG_PASSPHRASE_FILE`` hold paths, and
#: redacting a path (``/dev/null``, a home directory) would blank it out of every error message.
NOT_SECRET_NAME = re.compile(r"_(FILE|PATH|DIR|ID|ARN|REGION)$", re.IGNORECASE)
#: ``scheme://user:password@`` — the password group is what :func:`redact` replaces. The password
#: runs to the last ``@`` before the host (a raw ``@`` in a password is common, if invalid).
URL_CREDENTIALS = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*:)" r"(?P<password>[^\s/?#\"'<>]+)@"
)


class Revealed(str):
    """A decrypted secret value: a plain ``str`` to its users, ``'[secret]'`` in reprs."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASKED)


def is_secure(value: Any) -> bool:
    """Whether ``value`` is Pulumi's encoding of a secret: ``{"secure": "<ciphertext>"}``."""
    return isinstance(value, Mapping) and len(value) == 1 and isinstance(value.get(SECURE), str)


def secure_leaves(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(dotted path, ciphertext) of every secret in ``value`` (list items as ``name[i]``)."""
    if is_secure(value):
        yield path, value[SECURE]
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from secure_leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from secure_leaves(item, f"{path}[{index}]")


def has_secrets(value: Any) -> bool:
    return next(secure_leaves(value), None) is not None


# --------------------------------------------------------------------------- the stack's provider


@dataclass(frozen=True)
class StackSecrets:
    """How one stack file's secrets are encrypted, read from its top-level keys."""

    #: ``passphrase``, or the scheme of another provider (``awskms``, ...), or ``service``.
    provider: str
    #: ``encryptionsalt`` (passphrase provider only).
    salt: str | None
    #: The stack file, for messages.
    source: str

    @classmethod
    def of(cls, doc: Mapping[str, Any], source: str | Path) -> StackSecrets:
        name = Path(source).name
        configured = str(doc.get("secretsprovider") or "").strip()
        salt = doc.get("encryptionsalt")
        salt = str(salt) if salt else None
        if configured and configured != "passphrase":
            provider = configured.split("://", 1)[0] or configured
        elif salt or configured == "passphrase":
            provider = "passphrase"
        else:
            provider = "service"  # Pulumi Cloud keeps the key; the file names no provider
        return cls(provider, salt, name)

    def decryptable(self, env: Mapping[str, str]) -> bool:
        """Whether this process can decrypt the values itself."""
        return self.provider == "passphrase" and passphrase(env) is not None

    def why_locked(self) -> str:
        """Why a secret of this stack is not decrypted here, and what to do (one clause)."""
        if self.provider == "passphrase":
            return f"set {PASSPHRASE_ENV} or {PASSPHRASE_FILE_ENV} to decrypt it"
        where = "Pulumi Cloud" if self.provider == "service" else f"the {self.provider} secrets provider"
        return f"{where} decrypts it only through the Pulumi CLI (use --backend pulumi)"

    def decrypter(self, env: Mapping[str, str]) -> _Decrypter:
        phrase = passphrase(env)
        if self.provider != "passphrase" or phrase is None:
            reason = f"the secrets of {self.source} cannot be decrypted here; {self.why_locked()}"
            raise ConfigError("", reason)
        if not self.salt:
            raise ConfigError("", f"{self.source} has secure values but no encryptionsalt")
        origin = PASSPHRASE_ENV if PASSPHRASE_ENV in env else PASSPHRASE_FILE_ENV
        return _decrypter(phrase, self.salt, self.source, origin)


def passphrase(env: Mapping[str, str] | None = None) -> str | None:
    """The passphrase as the Pulumi CLI finds it, or None. An unreadable file is a ConfigError."""
    env = os.environ if env is None else env
    if PASSPHRASE_ENV in env:
        return env[PASSPHRASE_ENV]
    name = env.get(PASSPHRASE_FILE_ENV)
    if not name:
        return None
    try:
        return Path(name).read_text().strip()
    except OSError as exc:
        raise ConfigError(PASSPHRASE_FILE_ENV, f"cannot read {name}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(PASSPHRASE_FILE_ENV, f"{name} is not a text file") from None


class _Decrypter:
    """AES-256-GCM under a key already checked against the stack's ``encryptionsalt``."""

    def __init__(self, key: bytes, source: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)
        self._source = source

    def decrypt(self, ciphertext: str, key: str = "") -> str:
        """The plaintext of one ``v1:<nonce>:<ciphertext>`` value; ConfigError naming ``key``."""
        from cryptography.exceptions import InvalidTag

        try:
            nonce, data = _split_value(ciphertext)
            return self._aead.decrypt(nonce, data, None).decode("utf-8")
        except (ValueError, InvalidTag):
            raise ConfigError(
                key, f"the secure value in {self._source} cannot be decrypted (damaged, or of another stack)"
            ) from None


def _split_value(value: str) -> tuple[bytes, bytes]:
    parts = value.split(":")
    if len(parts) != 3 or parts[0] != "v1":
        raise ValueError("not a v1 value")
    try:
        nonce = base64.b64decode(parts[1], validate=True)
        data = base64.b64decode(parts[2], validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None
    if len(nonce) != _NONCE_BYTES:
        raise ValueError("bad nonce")
    return nonce, data


@functools.lru_cache(maxsize=8)
def _derive(phrase: str, salt: bytes) -> bytes:
    """PBKDF2-HMAC-SHA256, 1,000,000 iterations: slow on purpose, so computed once per process."""
    return hashlib.pbkdf2_hmac("sha256", phrase.encode("utf-8"), salt, _ITERATIONS, _KEY_BYTES)


@functools.lru_cache(maxsize=8)
def _decrypter(phrase: str, state: str, source: str, origin: str) -> _Decrypter:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    version, _, rest = state.partition(":")
    salt_b64, _, check = rest.partition(":")
    try:
        if version != "v1" or not check:
            raise ValueError("unknown format")
        salt = base64.b64decode(salt_b64, validate=True)
        nonce, data = _split_value(check)
    except (ValueError, binascii.Error):
        raise ConfigError("encryptionsalt", f"{source}: not a passphrase provider's salt (v1:...)") from None
    key = _derive(phrase, salt)
    try:
        ok = AESGCM(key).decrypt(nonce, data, None) == _CHECK_VALUE.encode()
    except InvalidTag:
        ok = False
    if not ok:
        raise InvalidInput(f"incorrect passphrase in {origin} for the secrets of {source}")
    return _Decrypter(key, source)


# --------------------------------------------------------------------------- whole namespaces


def reveal(
    value: Any,
    secrets: StackSecrets,
    *,
    prefix: str = "",
    decrypt: bool = True,
    env: Mapping[str, str] | None = None,
) -> Any:
    """A copy of ``value`` with every secret decrypted (:class:`Revealed`), or :data:`MASKED` when
    it cannot be decrypted here (or ``decrypt`` is False). ``prefix`` names keys in errors.

    A wrong passphrase or a damaged value is a ConfigError; a missing passphrase is not."""
    env = os.environ if env is None else env
    if not has_secrets(value):
        return value
    decrypter = secrets.decrypter(env) if decrypt and secrets.decryptable(env) else None

    def walk(item: Any, path: str) -> Any:
        if is_secure(item):
            if decrypter is None:
                return MASKED
            plain = Revealed(decrypter.decrypt(item[SECURE], path))
            remember([plain])
            return plain
        if isinstance(item, Mapping):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(item)]
        return item

    return walk(value, prefix)


def conceal(value: Any, placeholder: str = SAVED_PLACEHOLDER) -> Any:
    """A copy of ``value`` with every :class:`Revealed` string (at any depth) replaced by
    ``placeholder``: what may be written to disk."""
    if isinstance(value, Revealed):
        return placeholder
    if isinstance(value, Mapping):
        return {k: conceal(v, placeholder) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [conceal(v, placeholder) for v in value]
    return value


def revealed_values(value: Any) -> set[str]:
    """Every :class:`Revealed` string in ``value`` (at any depth)."""
    if isinstance(value, Revealed):
        return {str(value)}
    if isinstance(value, Mapping):
        return set().union(*(revealed_values(v) for v in value.values()))
    if isinstance(value, list | tuple):
        return set().union(*(revealed_values(v) for v in value))
    return set()


def scrub(value: Any, texts: set[str], placeholder: str = SAVED_PLACEHOLDER) -> Any:
    """A copy of ``value`` (JSON-like) in which every string containing one of ``texts`` has it
    replaced by ``placeholder``; ``value`` itself when ``texts`` is empty. Only ``texts``: what is
    saved to be read back (a sandbox session) must keep every other string as it was."""
    if not texts:
        return value
    ordered = _longest_first(texts)

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return _replace(item, ordered, placeholder)
        if isinstance(item, Mapping):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [walk(v) for v in item]
        return item

    return walk(value)


# --------------------------------------------------------------------------- redacting text

_remembered: set[str] = set()
_remembered_lock = threading.Lock()


def remember(values: Iterable[str]) -> None:
    """Make :func:`redact` replace each of ``values`` (secrets this process was handed: decrypted
    config values, validation headers, a command hook's secret variables) from now on."""
    found = {str(v) for v in values if v and len(str(v)) >= MIN_SECRET_LENGTH}
    if found - _remembered:
        with _remembered_lock:
            _remembered.update(found)


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values of the variables in ``env`` whose names look secret (TOKEN, SECRET, PASSWORD, KEY,
    PASSPHRASE, CREDENTIAL), and the passwords of URLs in any variable (``DATABASE_URL``)."""
    found = [
        v
        for name, v in env.items()
        if SECRET_NAME.search(name) and not NOT_SECRET_NAME.search(name) and len(v) >= MIN_SECRET_LENGTH
    ]
    for value in env.values():
        if "://" in value:
            for match in URL_CREDENTIALS.finditer(value):
                found += [match["password"], urllib.parse.unquote(match["password"])]
    return [v for v in dict.fromkeys(found) if len(v) >= MIN_SECRET_LENGTH]


def known_secrets(env: Mapping[str, str] | None = None) -> set[str]:
    """Every secret value this process knows now: remembered ones and those of ``env`` (default:
    the process environment, read at each call)."""
    return set(secret_values(os.environ if env is None else env)) | _remembered


def redact(text: str, secrets: Iterable[str] = (), *, placeholder: str = REDACTED) -> str:
    """``text`` with every known secret (:func:`known_secrets`) and each of ``secrets`` replaced
    by ``placeholder``, and the password of every ``scheme://user:password@host`` in it too."""
    if not text:
        return text
    texts = known_secrets() | {s for s in secrets if s}
    text = _replace(text, _longest_first(texts), placeholder)
    if "://" in text:
        text = URL_CREDENTIALS.sub(lambda m: m["head"] + placeholder + "@", text)
    return text


def redact_value(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of ``value`` (JSON-like: mappings, lists, strings) with :func:`redact` applied to
    every string value in it (the known secrets are looked up once per call). Mapping keys are
    names (fields, headers, variables), left as they are so the value still reads back."""
    ordered = _longest_first(known_secrets() | {s for s in secrets if s})
    return _redact_tree(value, ordered)


def _redact_tree(value: Any, ordered: list[str]) -> Any:
    if isinstance(value, str):
        text = _replace(value, ordered, REDACTED) if value else value
        return URL_CREDENTIALS.sub(lambda m: m["head"] + REDACTED + "@", text) if "://" in text else text
    if isinstance(value, Mapping):
        return {k: _redact_tree(v, ordered) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_tree(v, ordered) for v in value]
    return value


def _longest_first(texts: Iterable[str]) -> list[str]:
    return sorted({t for t in texts if t}, key=len, reverse=True)


def _replace(text: str, ordered: list[str], placeholder: str) -> str:
    for secret in ordered:
        if secret in text:
            text = text.replace(secret, placeholder)
    return text


def locked_keys(value: Any, path: str = "") -> Iterator[str]:
    """Dotted paths of the values in ``value`` that stand for a secret not available here."""
    if isinstance(value, str):
        if value in (MASKED, SAVED_PLACEHOLDER):
            yield path
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from locked_keys(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from locked_keys(item, f"{path}[{index}]")


def locked_hint() -> str:
    """The fix for a secret that was not decrypted, when the stack's provider is not at hand."""
    return (
        f"a Pulumi secret not decrypted here; set {PASSPHRASE_ENV} (or {PASSPHRASE_FILE_ENV}) for the "
        "passphrase provider, or use --backend pulumi for another secrets provider"
    )


def require_plaintext(service: Any, name: str) -> None:
    """Refuse, in one line naming the key, a service whose validation headers (sent with every
    validation request) hold a secret that was not decrypted. ``service`` is a ServiceConfig."""
    for header, value in service.validation.headers.items():
        if value.get_secret_value() in (MASKED, SAVED_PLACEHOLDER):
            raise ConfigError(f"rfs-deploy:services.{name}.validation.headers.{header}", locked_hint())
