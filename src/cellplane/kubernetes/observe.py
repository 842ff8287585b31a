"""One observation of a data plane's workloads, and the status report made of it.

``observe`` lists, per cell namespace, the Deployments, HorizontalPodAutoscalers, pods and Jobs labelled as this
data plane's (four list requests per namespace, all at once) and sorts the pods: a Job's by its Job
(``batch.kubernetes.io/job-name``), a service's by its selector's ``app.kubernetes.io/instance``. ``reports`` maps
them, with what the apply said (blocked and refused deployments, the CronJobs applied), onto the contract's
``DeploymentReport``s (``health``; an autoscaled deployment's ``scaling`` from ``autoscaling``).
Cost, measured for 500 services on the busy 2-core test machine: about 1 s, mostly decoding the lists' JSON (the
API server sends every object whole, ``managedFields`` included).
"""

from __future__ import annotations

import asyncio
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient

from cellplane.contract import DeploymentReport, DesiredDeployment, DesiredState
from cellplane.kubernetes import autoscaling, health, names
from cellplane.kubernetes.prune import list_kind
from cellplane.kubernetes.render import Key
from cellplane.kubernetes.workloads import TASK_TYPES

JOB_NAME = "batch.kubernetes.io/job-name"
Pods = list[dict[str, Any]]


@dataclass
class Observed:
    """One observation pass's live objects."""

    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (namespace, name) -> obj
    hpas: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (namespace, name) -> obj
    pods: dict[tuple[str, str], Pods] = field(default_factory=dict)  # (namespace, instance label) -> pods
    jobs: list[dict[str, Any]] = field(default_factory=list)
    job_pods: dict[tuple[str, str], Pods] = field(default_factory=dict)  # (namespace, Job name) -> pods

    def replaced(self, part: Observed, namespaces: Container[str], keep: Container[str]) -> Observed:
        """This observation with ``namespaces``' objects taken from ``part`` (a pass over those namespaces only)
        and the other namespaces' kept as they were when in ``keep`` (dropped otherwise: no longer observed)."""
        def take(ns: str) -> bool:
            return ns not in namespaces and ns in keep
        return Observed(
            deployments={k: v for k, v in self.deployments.items() if take(k[0])} | part.deployments,
            hpas={k: v for k, v in self.hpas.items() if take(k[0])} | part.hpas,
            pods={k: v for k, v in self.pods.items() if take(k[0])} | part.pods,
            jobs=[j for j in self.jobs if take(j["metadata"].get("namespace", ""))] + part.jobs,
            job_pods={k: v for k, v in self.job_pods.items() if take(k[0])} | part.job_pods)

    def pods_of(self, organization: str, d: DesiredDeployment) -> Pods:
        namespace = names.namespace(organization, d.project, d.environment)
        return self.pods.get((namespace, names.workload(d.component, d.version)), [])

    def current_pods(self, organization: str, d: DesiredDeployment) -> Pods:
        """A service's pods of its current release, by name."""
        release = names.label_value(d.release)
        return sorted((p for p in self.pods_of(organization, d)
                       if (p["metadata"].get("labels") or {}).get(names.RELEASE) == release),
                      key=lambda p: p["metadata"]["name"])


async def observe(client: AsyncClient, labels: dict[str, str], namespaces: list[str]) -> Observed:
    lists = await asyncio.gather(*(asyncio.gather(
        list_kind(client, "apps/v1", "Deployment", labels, ns),
        list_kind(client, "v1", "Pod", labels, ns),
        list_kind(client, "batch/v1", "Job", labels, ns),
        list_kind(client, autoscaling.API_VERSION, autoscaling.KIND, labels, ns)) for ns in namespaces))
    seen = Observed()
    for deployments, pods, jobs, hpas in lists:
        for obj in deployments:
            seen.deployments[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
        for obj in hpas:
            seen.hpas[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
        for pod in pods:
            meta = pod["metadata"]
            pod_labels = meta.get("labels") or {}
            job = pod_labels.get(JOB_NAME) or pod_labels.get("job-name")
            if job:
                seen.job_pods.setdefault((meta["namespace"], job), []).append(pod)
            elif names.INSTANCE in pod_labels:
                seen.pods.setdefault((meta["namespace"], pod_labels[names.INSTANCE]), []).append(pod)
        seen.jobs += jobs
    return seen


def running_pods(desired: DesiredState, seen: Observed) -> list[tuple[dict[str, Any], DesiredDeployment, int]]:
    """The running pods of the services' current releases, with their deployment and replica index."""
    out = []
    for d in desired.deployments:
        if d.type not in TASK_TYPES:
            out += [(p, d, i) for i, p in enumerate(seen.current_pods(desired.organization, d))
                    if (p.get("status") or {}).get("phase") == "Running"]
    return out


def failing_pods(desired: DesiredState, seen: Observed) -> Pods:
    """The services' pods that will not run by themselves (``health.pod_problem``)."""
    return [p for d in desired.deployments if d.type not in TASK_TYPES
            for p in seen.pods_of(desired.organization, d) if health.pod_problem(p) is not None]


def reports(desired: DesiredState, seen: Observed, *, blocked: dict[str, str], errors: dict[str, str],
            applied: Container[Key], last_lines: dict[str, str],
            decisions: dict[str, autoscaling.Decision] | None = None, wakes: bool = False) -> list[DeploymentReport]:
    """Every deployment's report (``last_lines``: pod name -> its container's last lines); an autoscaled one's with
    its ``scaling`` (``autoscaling.scaling_report``: ``decisions`` are the agent's own by deployment id, ``wakes``
    whether it serves the gateways that wake a deployment at zero)."""
    decisions = decisions or {}
    out = []
    for d in desired.deployments:
        namespace = names.namespace(desired.organization, d.project, d.environment)
        name = names.workload(d.component, d.version)
        if d.type in TASK_TYPES:
            cron = ("batch/v1", "CronJob", namespace, name) in applied
            out.append(health.task_report(d, {} if cron else None, blocked=blocked.get(d.id), error=errors.get(d.id)))
            continue
        pods = seen.pods_of(desired.organization, d)
        live = seen.deployments.get((namespace, name))
        report = health.service_report(d, live, pods, blocked=blocked.get(d.id), error=errors.get(d.id),
                                       last_lines=last_lines)
        if autoscaling.autoscaled(d):
            report.scaling = autoscaling.scaling_report(d, live, pods, seen.hpas.get((namespace, name)),
                                                        decisions.get(d.id), wakes=wakes)
        out.append(report)
    return out
