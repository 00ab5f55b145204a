"""Instances as the sandbox knows them: when each was launched and which version it runs.

moto launches and terminates instances but forgets what matters here: it reports every
instance on the group's first launch template version and stamps launch times with the wall
clock. :class:`Fleet` keeps its own record, filled in whenever moto's groups change (after an
update, after a replacement) from the group's launch template *at that moment*, resolved to a
release version through :class:`TemplateVersions` (kept by the applier).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

#: (launch template id, version number)
TemplateRef = tuple[str, int]


@dataclass
class Instance:
    """One instance of one Auto Scaling group, in virtual time."""

    instance_id: str
    asg: str
    launched_at: float
    version: str | None
    template: TemplateRef | None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["template"] = list(self.template) if self.template else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Instance:
        template = data.get("template")
        return cls(
            instance_id=data["instance_id"],
            asg=data["asg"],
            launched_at=float(data["launched_at"]),
            version=data.get("version"),
            template=(template[0], int(template[1])) if template else None,
        )


class TemplateVersions:
    """Launch template version -> release version, as the applier created them."""

    def __init__(self) -> None:
        self._versions: dict[str, dict[int, str | None]] = {}

    def record(self, template_id: str, number: int, version: str | None) -> None:
        self._versions.setdefault(template_id, {})[number] = version

    def version_of(self, ref: TemplateRef | None) -> str | None:
        if ref is None:
            return None
        return self._versions.get(ref[0], {}).get(ref[1])

    def to_json(self) -> dict[str, dict[str, str | None]]:
        return {tid: {str(n): v for n, v in numbers.items()} for tid, numbers in self._versions.items()}

    def load_json(self, data: dict[str, dict[str, str | None]]) -> None:
        self._versions = {tid: {int(n): v for n, v in numbers.items()} for tid, numbers in data.items()}


class Fleet:
    """The sandbox's record of every instance moto runs, kept in step with moto's groups."""

    def __init__(self, autoscaling: Any, ec2: Any, templates: TemplateVersions) -> None:
        self._asg = autoscaling
        self._ec2 = ec2
        self.templates = templates
        self.instances: dict[str, Instance] = {}

    def group_names(self) -> list[str]:
        groups = self._asg.describe_auto_scaling_groups()["AutoScalingGroups"]
        return [g["AutoScalingGroupName"] for g in groups]

    def describe_group(self, name: str) -> dict[str, Any] | None:
        groups = self._asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        return groups[0] if groups else None

    def group_template(self, group: dict[str, Any]) -> TemplateRef | None:
        """The launch template version a group launches now ($Latest / $Default resolved)."""
        spec = group.get("LaunchTemplate")
        if not spec:
            return None
        template_id = spec.get("LaunchTemplateId")
        described = self._ec2.describe_launch_templates(
            **(
                {"LaunchTemplateIds": [template_id]}
                if template_id
                else {"LaunchTemplateNames": [spec["LaunchTemplateName"]]}
            )
        )["LaunchTemplates"][0]
        number = str(spec.get("Version") or "$Default")
        if number == "$Latest":
            resolved = int(described["LatestVersionNumber"])
        elif number == "$Default":
            resolved = int(described["DefaultVersionNumber"])
        else:
            resolved = int(number)
        return described["LaunchTemplateId"], resolved

    def sync(self, now: float, launched_at: float | None = None) -> list[Instance]:
        """Record instances moto launched since the last sync, forget terminated ones.

        New instances are stamped ``launched_at`` (default ``now``) and the version of their
        group's current launch template. Returns the new instances.
        """
        seen: set[str] = set()
        new: list[Instance] = []
        for group in self._asg.describe_auto_scaling_groups()["AutoScalingGroups"]:
            ref = self.group_template(group)
            for member in group.get("Instances", []):
                iid = member["InstanceId"]
                seen.add(iid)
                if iid in self.instances:
                    continue
                record = Instance(
                    instance_id=iid,
                    asg=group["AutoScalingGroupName"],
                    launched_at=now if launched_at is None else launched_at,
                    version=self.templates.version_of(ref),
                    template=ref,
                )
                self.instances[iid] = record
                new.append(record)
        for iid in [iid for iid in self.instances if iid not in seen]:
            del self.instances[iid]
        return new

    def of_group(self, asg: str) -> list[Instance]:
        """The group's instances, oldest first."""
        members = [i for i in self.instances.values() if i.asg == asg]
        return sorted(members, key=lambda i: (i.launched_at, i.instance_id))

    def of_groups(self, groups: Iterable[str]) -> list[Instance]:
        names = set(groups)
        return sorted(
            (i for i in self.instances.values() if i.asg in names),
            key=lambda i: (i.launched_at, i.instance_id),
        )

    def adopt(self, previous: list[Instance]) -> dict[str, str]:
        """After moto was rebuilt (new instance ids): give each group's new instances the launch
        times and versions the old ones had, pairing them oldest first. Returns old id -> new id."""
        renamed: dict[str, str] = {}
        by_group: dict[str, list[Instance]] = {}
        for record in previous:
            by_group.setdefault(record.asg, []).append(record)
        for asg, old in by_group.items():
            old.sort(key=lambda i: (i.launched_at, i.instance_id))
            for current, before in zip(self.of_group(asg), old, strict=False):
                current.launched_at = before.launched_at
                current.version = before.version
                current.template = before.template or current.template
                renamed[before.instance_id] = current.instance_id
        return renamed
