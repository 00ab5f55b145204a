"""Reading the ``rfs-deploy`` config namespace into :class:`StackConfig`, with one-line errors.

Pulumi hands structured config values to a program as JSON strings, and a value written by the
driver through the Automation API is a JSON string too; so every top-level value may arrive as a
mapping (parsed YAML) or as a JSON string, and both mean the same.

A stack file's Pulumi secrets (``secure:`` values) are decrypted in memory when this process can
(the passphrase provider with a passphrase at hand) and masked otherwise: see
:mod:`rfs_deploy.config.secrets`.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from rfs_deploy.config import bounded_yaml, secrets
from rfs_deploy.config.model import ReleaseState, StackConfig
from rfs_deploy.errors import ConfigError

NAMESPACE = "rfs-deploy"
#: The only key the driver ever writes.
RELEASE_KEY = f"{NAMESPACE}:release"
#: The stack config's top-level keys as a stack file spells them (camelCase: ``loadBalancers``).
TOP_LEVEL_KEYS = tuple(field.alias or name for name, field in StackConfig.model_fields.items())


def _decode(key: str, value: Any) -> Any:
    if isinstance(value, str) and value == secrets.MASKED:
        raise ConfigError(f"{NAMESPACE}:{key}", f"the whole value is {secrets.locked_hint()}")
    if isinstance(value, str) and value == secrets.SAVED_PLACEHOLDER:
        raise ConfigError(
            f"{NAMESPACE}:{key}",
            "a Pulumi secret the sandbox session does not keep; open it with its stack file",
        )
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{NAMESPACE}:{key}", f"not valid JSON ({exc.msg})") from None
    return value


def load_stack_config(raw: Mapping[str, Any]) -> StackConfig:
    """Validate the namespace's values (``{"network": ..., "services": ...}``, no prefix)."""
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(f"{NAMESPACE}:{unknown[0]}", _unknown_key_reason(unknown[0], TOP_LEVEL_KEYS))
    data = {key: _decode(key, value) for key, value in raw.items()}
    try:
        return StackConfig.model_validate(data)
    except ValidationError as exc:
        raise format_error(exc, StackConfig) from None


def load_stack_file(path: str | Path) -> StackConfig:
    """Read ``stacks/Pulumi.<stack>.yaml`` and validate its ``rfs-deploy:*`` keys."""
    raw = read_namespace(path)
    return load_stack_config(raw)


#: AWS region names (us-east-1, eu-central-2, us-gov-west-1, us-isob-east-1, ap-southeast-7).
#: The stack config key of the AWS region (the pulumi-aws provider's).
REGION_KEY = "aws:region"
AWS_REGION = re.compile(r"[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}")


def read_stack_document(path: str | Path) -> dict[str, Any]:
    """A stack file parsed (its ``config`` a mapping); one-line ConfigError when it is not.

    Read with the bounded reader (:mod:`rfs_deploy.config.bounded_yaml`: size, depth, no aliases),
    and every value JSON cannot carry is refused here, naming its key, in any namespace: Pulumi
    hands config to the program as JSON, so such a value would otherwise fail only at the first
    update. ``aws:region`` must name a region."""
    path = Path(path)
    try:
        doc = bounded_yaml.read(path)
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror or exc}") from None
    except bounded_yaml.YamlRefused as exc:
        reason = str(exc)
        verb = "is" if reason.startswith("not ") else "is refused:"
        raise ConfigError("", f"{path} {verb} {reason}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError("", f"{path}: a stack file must be a mapping (with a 'config' key)")
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError("", f"{path}: 'config' must be a mapping")
    bad = bounded_yaml.first_non_json(config)
    if bad is not None:
        raise ConfigError(bad[0], bad[1])
    bad = bounded_yaml.first_non_json({k: v for k, v in doc.items() if k != "config"})
    if bad is not None:
        raise ConfigError("", f"{path}: {bad[0] or 'a key'}: {bad[1]}")
    region = config.get(REGION_KEY)
    if region is not None and not (isinstance(region, str) and AWS_REGION.fullmatch(region)):
        raise ConfigError(REGION_KEY, f"{_shown(region)} is not an AWS region (like us-east-1)")
    return {**doc, "config": config}


def _shown(value: Any, limit: int = 60) -> str:
    """``value`` for an error line: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_namespace(path: str | Path, *, decrypt: bool = True) -> dict[str, Any]:
    """The ``rfs-deploy:*`` values of a stack file, prefix stripped.

    Secrets are decrypted when they can be here (``decrypt`` and the passphrase provider with a
    passphrase), else :data:`~rfs_deploy.config.secrets.MASKED`; a wrong passphrase is a
    ConfigError."""
    doc = read_stack_document(path)
    found = secrets.StackSecrets.of(doc, path)
    prefix = f"{NAMESPACE}:"
    return {
        key[len(prefix) :]: secrets.reveal(value, found, prefix=key, decrypt=decrypt)
        for key, value in doc["config"].items()
        if key.startswith(prefix)
    }


def read_other_config(path: str | Path, *, decrypt: bool = True, keep_secrets: bool = True) -> dict[str, Any]:
    """The stack file's keys of other namespaces (``aws:region``), fully qualified; their secrets
    decrypted or masked as by :func:`read_namespace`, or left out (``keep_secrets=False``)."""
    doc = read_stack_document(path)
    found = secrets.StackSecrets.of(doc, path)
    return {
        key: secrets.reveal(value, found, prefix=key, decrypt=decrypt)
        for key, value in doc["config"].items()
        if not key.startswith(f"{NAMESPACE}:") and (keep_secrets or not secrets.has_secrets(value))
    }


def stack_config_dir(project: str | Path) -> Path:
    """Where the Pulumi project in ``project`` keeps its stack files: Pulumi.yaml's
    ``stackConfigDir``, else the project directory itself (Pulumi's own rule)."""
    root = Path(project)
    config_dir = project_settings(root).get("stackConfigDir")
    return root / config_dir if isinstance(config_dir, str) and config_dir else root


def project_settings(root: Path) -> dict[str, Any]:
    """The Pulumi.yaml of the project in ``root`` as a mapping ({} when missing or unreadable:
    Pulumi itself reports a broken project file)."""
    found = next((root / f"Pulumi{e}" for e in (".yaml", ".yml") if (root / f"Pulumi{e}").is_file()), None)
    try:
        settings = bounded_yaml.read(found) if found is not None else {}
    except (OSError, bounded_yaml.YamlRefused):
        settings = {}
    return settings if isinstance(settings, dict) else {}


#: The module the shipped program's entry point runs (``__main__.py``).
SHIPPED_PROGRAM = "rfs_deploy.infra.program"


def runs_shipped_program(project: str | Path) -> bool:
    """Whether the Pulumi project in ``project`` runs rfs-deploy's own program: its ``main``
    (Pulumi.yaml's, else the project directory) has a ``__main__.py`` importing
    :data:`SHIPPED_PROGRAM`. A program of your own builds its network itself."""
    root = Path(project)
    main = project_settings(root).get("main")
    entry = root / main if isinstance(main, str) and main else root
    entry = entry / "__main__.py" if entry.is_dir() else entry
    try:
        return SHIPPED_PROGRAM in entry.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def require_network(config: StackConfig) -> StackConfig:
    """``config``, refused with one line when it has no ``network``: the shipped program puts every
    service in that VPC (a program of your own passes its network to the components instead)."""
    if config.network is None:
        raise ConfigError(
            f"{NAMESPACE}:network", "missing: the shipped program puts every service in this VPC"
        )
    return config


def stack_region(path: str | Path) -> str | None:
    """The stack file's ``aws:region`` (checked by :func:`read_stack_document`), None when unset.
    The one place the region is read from a stack file: the driver's AWS session, the sandbox
    and ``iam-policy`` all ask here."""
    region = read_stack_document(path)["config"].get(REGION_KEY)
    return str(region) if region is not None else None


def load_from_pulumi() -> StackConfig:
    """Inside a Pulumi program: read the namespace from the stack's config."""
    import pulumi

    cfg = pulumi.Config(NAMESPACE)
    raw = {key: value for key in TOP_LEVEL_KEYS if (value := cfg.get(key)) is not None}
    return load_stack_config(raw)


def parse_release(service: str, value: Any) -> ReleaseState:
    """Validate one service's release state (as the driver reads it back)."""
    try:
        return ReleaseState.model_validate(value)
    except ValidationError as exc:
        raise format_error(exc, ReleaseState, prefix=f"{NAMESPACE}:release.{service}") from None


# --------------------------------------------------------------------------- errors


def format_error(exc: ValidationError, model: type[BaseModel], prefix: str = NAMESPACE) -> ConfigError:
    """One line naming the first bad key and why; ``(+N more)`` when there are more."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    ctx = first.get("ctx") or {}
    raw_loc = [bounded_yaml.safe_key(str(part)) for part in first["loc"]]
    if first["type"] == "keyed":
        key = ctx["key"]
        reason = str(ctx["reason"])
    else:
        loc = _strip_union_tags(raw_loc)
        key = ".".join(loc)
        reason = first["msg"].removeprefix("Value error, ")
        if isinstance(first.get("input"), str) and first["input"] in (
            secrets.MASKED,
            secrets.SAVED_PLACEHOLDER,
        ):
            reason = secrets.locked_hint()
        elif first["type"] == "extra_forbidden":
            reason = _unknown_key_reason(loc[-1], _siblings(model, raw_loc[:-1]))
        elif first["type"] == "union_tag_invalid":
            reason = f"unknown strategy {ctx.get('tag')!r}; use one of {ctx.get('expected_tags')}"
    sep = ":" if prefix == NAMESPACE else "."
    full = f"{prefix}{sep}{key}" if key else prefix
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return ConfigError(full, reason + more)


def _strip_union_tags(loc: list[str]) -> list[str]:
    # pydantic puts the discriminator tag in the location (strategy.canary.canaryIncrement).
    from rfs_deploy.config.model import STRATEGY_NAMES

    return [p for i, p in enumerate(loc) if not (p in STRATEGY_NAMES and i > 0 and loc[i - 1] == "strategy")]


def _siblings(model: type[BaseModel], path: list[str]) -> tuple[str, ...]:
    """Known keys at ``path`` (aliases), found by walking the model's fields."""
    current: Any = model
    for part in path:
        if isinstance(current, tuple):  # a discriminated union: the location names the tag
            current = next((m for m in current if m.model_fields["type"].default == part), None)
        elif typing.get_origin(current) is dict:  # keyed by user names (services.<name>)
            current = _unwrap(typing.get_args(current)[1])
        elif hasattr(current, "model_fields"):
            match = next((f for n, f in current.model_fields.items() if part in (n, f.alias)), None)
            current = _unwrap(match.annotation) if match else None
        else:
            return ()
    fields = getattr(current, "model_fields", {})
    return tuple(f.alias or n for n, f in fields.items())


def _unwrap(annotation: Any) -> Any:
    """Reach the model inside Optional/Annotated (a tuple of models for a union)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        models = tuple(a for a in args if hasattr(a, "model_fields"))
        if len(models) > 1:
            return models
        return models[0] if models else (_unwrap(args[0]) if len(args) == 1 else annotation)
    return annotation


def _unknown_key_reason(key: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key; known keys: {', '.join(known)}" if known else "unknown key"
