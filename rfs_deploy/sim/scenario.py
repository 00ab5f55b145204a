"""Sandbox scenarios: how much traffic, how each version behaves, how flaky the metrics are.

A scenario is a small YAML file (camelCase keys, unknown keys rejected)::

    description: the new version returns 5xx for one request in eight
    seed: 7
    traffic: {requestsPerMinute: 6000, noise: 0.05}
    baseline: {errorRate: 0.002, latency: {median: 0.08, p99: 0.35}, cpu: 35}
    new: {errorRate: 0.12}
    versions: {v3.0.0: {cpu: 80}}
    metrics: {missing: 0.0, delayed: 0.0, throttled: 0.0}
    loadBalancer: {propagationDelay: 0}
    errorBursts: {slotCv: 0.0, sharedCv: 0.0}
    outages: [{start: 8m, duration: 2m, errorRate: 0.5}]

``baseline`` is the behaviour of the version the fleet ran when the sandbox started (or of
``baselineVersion`` when given); ``new`` is every other version; ``versions`` overrides by exact
version name. ``new`` inherits what it does not say from ``baseline``, and each ``versions``
entry inherits from ``new``, so a scenario only spells out what differs.

Built-in scenarios live in ``rfs_deploy/sim/scenarios/``; :func:`load_scenario` takes their
name or the path of a user's file, read with the bounded YAML reader of the stack files
(:mod:`rfs_deploy.config.bounded_yaml`). Every number is bounded as in the stack config (a
duration at most a week, ``requestsPerMinute`` at most ten million, no booleans for numbers, no
NaN or infinity), and version names follow the release version pattern.

``errorBursts`` makes 5xx counts overdispersed, as real ones are: each minute's rate is drawn from
a Beta distribution around the version's rate with the given coefficient of variation, per target
group (``slotCv``) and/or once per minute for every version (``sharedCv``, an upstream's bad
minute). ``outages`` make every version fail together (an upstream dependency down): from
``start`` (counted from the sandbox session's first minute) for ``duration``, each version
answers at least ``errorRate`` of its requests with a 5xx, the HTTP endpoints included.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from rfs_deploy.config import bounded_yaml
from rfs_deploy.config.model import MAX_DURATION, Duration, Int, Num, UrlPath, Version
from rfs_deploy.errors import ScenarioError

#: The seed document's critical endpoints, checked by the validation step.
DEFAULT_ENDPOINTS = ("/api/users", "/api/products", "/api/orders")
#: The most traffic a scenario may send: ten million requests a minute.
MAX_REQUESTS_PER_MINUTE = 10_000_000


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Latency(_Model):
    """Response time of one request, log-normal: a median and a 99th percentile (seconds)."""

    median: Num = Field(default=0.08, gt=0, le=3600)
    p99: Num = Field(default=0.35, gt=0, le=3600)

    @model_validator(mode="after")
    def _ordered(self) -> Latency:
        if self.p99 < self.median:
            raise ValueError("p99 must not be below median")
        return self


class SlowStart(_Model):
    """How a freshly launched instance misbehaves before it settles (seconds after launch)."""

    #: Health checks fail this long: the target is not in service and gets no traffic.
    unhealthy_for: Duration = Field(default=0, ge=0, le=MAX_DURATION)
    #: It serves traffic but badly this long (counted from launch, so include ``unhealthyFor``).
    degraded_for: Duration = Field(default=0, ge=0, le=MAX_DURATION)
    #: While degraded: latency is multiplied by this ...
    latency_factor: Num = Field(default=1.0, ge=1.0, le=1000)
    #: ... and this fraction of requests fails with a 5xx (None: the version's own rate).
    error_rate: Num | None = Field(default=None, ge=0, le=1)
    #: ... and CPU runs at this percent (None: the version's own).
    cpu: Num | None = Field(default=None, ge=0, le=100)


class Behaviour(_Model):
    """How the instances of one version behave."""

    #: Fraction of requests answered with a 5xx by the target.
    error_rate: Num = Field(default=0.002, ge=0, le=1)
    latency: Latency = Field(default_factory=Latency)
    #: Average CPU utilisation (percent) at the scenario's traffic, and its minute-to-minute spread.
    cpu: Num = Field(default=35.0, ge=0, le=100)
    cpu_noise: Num = Field(default=2.0, ge=0, le=100)
    #: Seconds from launch until the target passes its health checks (boot + healthy threshold).
    boot_time: Duration = Field(default=60, ge=0, le=MAX_DURATION)
    slow_start: SlowStart = Field(default_factory=SlowStart)
    #: Targets of this version never pass a health check.
    never_healthy: bool = False
    #: Critical endpoints that answer 500 on this version (validation step).
    failing_endpoints: list[UrlPath] = Field(default_factory=list, max_length=100)


class Traffic(_Model):
    """Production requests reaching the load balancer."""

    requests_per_minute: Int = Field(default=6000, ge=0, le=MAX_REQUESTS_PER_MINUTE)
    #: Relative standard deviation of the per-minute request count.
    noise: Num = Field(default=0.05, ge=0, le=1)
    #: Fraction of requests carrying a forced-variant header (A/B); split evenly over the
    #: listener's http-header rules, the rest follows the default action's weights.
    forced_share: Num = Field(default=0.02, ge=0, le=1)


class MetricFlakiness(_Model):
    """How unreliable CloudWatch is in this scenario (probabilities per datapoint or call)."""

    #: A (target group, minute) datapoint is never published.
    missing: Num = Field(default=0.0, ge=0, le=1)
    #: A datapoint is published ``delay`` seconds late.
    delayed: Num = Field(default=0.0, ge=0, le=1)
    delay: Duration = Field(default=180, ge=0, le=86_400)
    #: A GetMetricData call is throttled (the adapter's retries exhausted).
    throttled: Num = Field(default=0.0, ge=0, le=1)


class LoadBalancer(_Model):
    """How the load balancer behaves after a change."""

    #: Seconds after a listener or rule change before DescribeListeners/DescribeRules (and the
    #: routing of requests) show it; ELBv2 is eventually consistent (see :mod:`rfs_deploy.sim.lag`).
    propagation_delay: Duration = Field(default=0, ge=0, le=3600)


def max_burst_rate(cv: float) -> float:
    """The largest mean 5xx rate a Beta distribution of coefficient of variation ``cv`` can have.

    A Beta with mean ``p`` and CV ``cv`` has ``alpha + beta = (1 - p) / (cv**2 p) - 1``, which must
    be positive: ``p < 1 / (1 + cv**2)`` (0.5 at CV 1, 0.2 at CV 2).
    """
    return 1.0 / (1.0 + cv * cv)


class ErrorBursts(_Model):
    """Overdispersed 5xx: each minute's rate drawn from a Beta around the version's own rate."""

    #: Coefficient of variation of each target group's minute, drawn on its own (0: steady).
    slot_cv: Num = Field(default=0.0, ge=0, le=10)
    #: Coefficient of variation of one draw per minute that scales every version's rate at once.
    shared_cv: Num = Field(default=0.0, ge=0, le=10)

    @property
    def active(self) -> bool:
        return self.slot_cv > 0 or self.shared_cv > 0


class Outage(_Model):
    """Every version fails together for a while: an upstream dependency is down."""

    #: Seconds from the sandbox session's first minute to the outage.
    start: Duration = Field(ge=0, le=MAX_DURATION)
    duration: Duration = Field(default=60, gt=0, le=MAX_DURATION)
    #: Each version answers at least this fraction of its requests with a 5xx meanwhile.
    error_rate: Num = Field(default=0.5, gt=0, le=1)

    def covers(self, elapsed: float) -> bool:
        return self.start <= elapsed < self.start + self.duration


class Scenario(_Model):
    """One sandbox scenario (see the module docstring)."""

    name: str = Field(default="custom", max_length=200)
    description: str = Field(default="", max_length=2000)
    #: Seeds the random numbers: 0 to 2**32 - 1 (as ``simulate --seed``).
    seed: Int = Field(default=0, ge=0, le=2**32 - 1)
    traffic: Traffic = Field(default_factory=Traffic)
    #: The version that gets ``baseline`` behaviour; None: whatever ran when the sandbox started.
    baseline_version: Version | None = None
    baseline: Behaviour = Field(default_factory=Behaviour)
    new: Behaviour = Field(default_factory=Behaviour)
    versions: dict[Version, Behaviour] = Field(default_factory=dict, max_length=100)
    metrics: MetricFlakiness = Field(default_factory=MetricFlakiness)
    load_balancer: LoadBalancer = Field(default_factory=LoadBalancer)
    #: Critical endpoints the sandbox's HTTP transport answers.
    endpoints: list[UrlPath] = Field(default_factory=lambda: list(DEFAULT_ENDPOINTS), max_length=100)
    error_bursts: ErrorBursts = Field(default_factory=ErrorBursts)
    outages: list[Outage] = Field(default_factory=list, max_length=100)

    @model_validator(mode="before")
    @classmethod
    def _inherit(cls, data: Any) -> Any:
        """``new`` inherits from ``baseline``, each ``versions`` entry from ``new``."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        baseline = data.get("baseline") or {}
        if isinstance(baseline, Mapping) and isinstance(data.get("new") or {}, Mapping):
            data["new"] = _merge(baseline, data.get("new") or {})
        versions = data.get("versions")
        if isinstance(versions, Mapping) and isinstance(data.get("new"), Mapping):
            data["versions"] = {
                name: _merge(data["new"], entry) if isinstance(entry, Mapping) else entry
                for name, entry in versions.items()
            }
        return data

    @model_validator(mode="after")
    def _bursts_possible(self) -> Scenario:
        """Every version's rate must admit a Beta of the configured CV (one line naming both)."""
        bursts = self.error_bursts
        if bursts.shared_cv > 0:
            rate = self.baseline.error_rate
            limit = max_burst_rate(bursts.shared_cv)
            if not 0 < rate < limit:
                raise ValueError(
                    f"errorBursts.sharedCv {bursts.shared_cv:g} draws around baseline.errorRate, which "
                    f"must be above 0 and below {limit:.3g} for that CV (it is {rate:g})"
                )
        if bursts.slot_cv > 0:
            limit = max_burst_rate(bursts.slot_cv)
            named = {"baseline": self.baseline, "new": self.new}
            named.update({f"versions.{bounded_yaml.safe_key(v)}": b for v, b in self.versions.items()})
            for where, behaviour in named.items():
                rate = behaviour.error_rate
                if rate >= limit:
                    raise ValueError(
                        f"errorBursts.slotCv {bursts.slot_cv:g} needs every errorRate below {limit:.3g} "
                        f"(a Beta of that CV has no larger mean); {where}.errorRate is {rate:g}"
                    )
        return self

    def outage_rate(self, elapsed: float) -> float:
        """The 5xx rate every version answers at least, ``elapsed`` seconds into the session (0: none)."""
        return max((o.error_rate for o in self.outages if o.covers(elapsed)), default=0.0)

    def behaviour(self, version: str | None, baseline_version: str | None) -> Behaviour:
        """The behaviour of ``version`` when ``baseline_version`` is the old one."""
        if version is not None and version in self.versions:
            return self.versions[version]
        old = self.baseline_version or baseline_version
        if version is None or old is None or version == old:
            return self.baseline
        return self.new


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of two raw mappings; ``over`` wins (keys compared as written)."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --------------------------------------------------------------------------- loading


def builtin_scenarios() -> tuple[str, ...]:
    """Names of the scenarios shipped with the package."""
    folder = resources.files("rfs_deploy.sim") / "scenarios"
    return tuple(sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name (``healthy``) or a user's YAML file by path, validated.

    Raises ScenarioError with one line naming the bad key.
    """
    text, label, default_name = _read(name_or_path)
    try:
        doc = bounded_yaml.parse(text)
    except bounded_yaml.YamlRefused as exc:
        reason = str(exc)
        verb = "is" if reason.startswith("not ") else "is refused:"
        raise ScenarioError(f"scenario {label} {verb} {reason}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise ScenarioError(f"scenario {label} must be a mapping of keys, not {type(doc).__name__}")
    bad = bounded_yaml.first_non_json(doc)
    if bad is not None:
        where = f"{bad[0]}: " if bad[0] else ""
        raise ScenarioError(f"scenario {label}: {where}{bad[1]}")
    return parse_scenario({"name": default_name, **doc}, label)


def parse_scenario(data: Mapping[str, Any], label: str = "<inline>") -> Scenario:
    """Validate a scenario from a mapping; ``label`` names it in error messages."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise _one_line(exc, label) from None


def _read(name_or_path: str | Path) -> tuple[str | bytes, str, str]:
    path = Path(name_or_path)
    is_path = isinstance(name_or_path, Path) or path.suffix in {".yaml", ".yml"} or len(path.parts) > 1
    if is_path or path.is_file():
        try:
            return bounded_yaml.read_bytes(path), str(path), path.stem
        except bounded_yaml.YamlRefused as exc:
            raise ScenarioError(f"cannot read scenario file {path}: {exc}") from None
        except OSError as exc:
            raise ScenarioError(f"cannot read scenario file {path}: {exc.strerror or exc}") from None
    name = str(name_or_path)
    known = builtin_scenarios()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ScenarioError(f"unknown scenario {name!r}; {hint}built-in: {', '.join(known)}, or a file path")
    resource = resources.files("rfs_deploy.sim") / "scenarios" / f"{name}.yaml"
    return resource.read_text(), name, name


def _one_line(exc: ValidationError, label: str) -> ScenarioError:
    errors = exc.errors(include_url=False)
    # a misspelt key is why its right spelling is "missing": name the misspelling
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [bounded_yaml.safe_key(str(part)) for part in first["loc"]]
    key = ".".join(loc)
    reason = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
        reason = f"unknown key; {hint}"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    where = f"{key}: " if key else ""
    return ScenarioError(f"scenario {label}: {where}{reason}{more}")


def _known_keys(path: list[str]) -> list[str]:
    """Aliases of the model reached by ``path`` from :class:`Scenario` (for did-you-mean)."""
    model: Any = Scenario
    item: Any = None  # the model of each entry of the list just reached (outages)
    for part in path:
        if model is Scenario and part == "versions":
            model = dict
            continue
        if model is dict:  # a version name
            model = Behaviour
            continue
        if item is not None:  # a list index
            model, item = item, None
            continue
        fields = getattr(model, "model_fields", {})
        match = next((f for n, f in fields.items() if part in (n, f.alias)), None)
        annotation = match.annotation if match else None
        if get_origin(annotation) is list:
            (item,) = get_args(annotation)
            model = list
            continue
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if model is None:
            return []
    return [f.alias or n for n, f in getattr(model, "model_fields", {}).items()]
