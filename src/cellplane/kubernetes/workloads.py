"""The pods of a deployment: a Deployment for a service, a CronJob for a scheduled task, a Job for a manual run.

Every pod runs the build's image by digest as the image's numeric non-root user (``RUN_AS``, what Cellplane's
images declare), with no privilege escalation, no capabilities, the runtime's default seccomp profile, a
read-only root file system (``/tmp`` is an ``emptyDir``), no service-account token and no service-link
variables: what the namespace's pod-security "restricted" level demands, and nothing the workload did not ask
for. Configuration comes from ``config.Configuration``; its checksum annotates the pod template, so a change of
a file or a secret (which a pod does not see by itself) rolls new pods, as a new release does.

Probes map the desired ones (``DesiredHealth``) with Kubernetes' whole seconds (a period or timeout under one
second becomes one); without a readiness probe a service is ready once its first endpoint's port accepts a TCP
connection, as on the local data plane (a UDP one: none). A rollout starts a new pod before it stops an old one
(``maxSurge`` 1, ``maxUnavailable`` 0): the local data plane's start-new, ready, switch, drain-old. Cost: building
dicts.
"""

from __future__ import annotations

import math
from typing import Any

from cellplane.contract import DesiredDeployment, DesiredProbe, DesiredRun
from cellplane.kubernetes import names
from cellplane.kubernetes.config import Blocked, Configuration

RUN_AS = 10014  # the user of Cellplane's images (cellplane.images.config.DEFAULT_USER)
CHECKSUM = "cellplane.dev/configuration"
TASK_TYPES = ("scheduled-task", "manual-task")
HTTP_TYPES = ("REST", "GraphQL", "WebSocket")
RUN_TTL = 3600  # seconds a finished run's Job stays for its exit code and logs to be read
POLICIES = ("Forbid", "Allow")


def image_of(d: DesiredDeployment) -> str:
    """The image the deployment runs, by digest; ``Blocked`` without one."""
    image = d.artifact.image
    if not image:
        raise Blocked("the release has no container image: a Kubernetes data plane runs images from a registry; "
                      "give the organization a registry (docs/images.md) and build again")
    if "@sha256:" not in image:
        raise Blocked(f"the image {image} is not named by digest")
    return image


def port_name(type_: str, port: int) -> str:
    """A container or Service port's name (an IANA service name: 15 characters at most)."""
    scheme = "http" if type_ in HTTP_TYPES else "grpc" if type_ == "gRPC" else type_.lower()
    return f"{scheme}-{port}"


def protocol(type_: str) -> str:
    return "UDP" if type_ == "UDP" else "TCP"


def _seconds(value: float, least: int) -> int:
    return max(least, math.ceil(value))


def probe(raw: DesiredProbe | None, default_port: int | None) -> dict[str, Any] | None:
    """A Kubernetes probe for a desired one (None for none, or an empty one, ``{}``, without a port to use)."""
    if raw is None or not (raw.model_fields_set or raw.model_extra):
        return None
    port = raw.port or default_port
    if port is None:
        return None
    handler: dict[str, Any] = ({"httpGet": {"path": raw.path, "port": port}} if raw.path is not None
                               else {"tcpSocket": {"port": port}})
    return {**handler, "initialDelaySeconds": _seconds(raw.initialDelaySeconds, 0),
            "periodSeconds": _seconds(raw.periodSeconds, 1), "timeoutSeconds": _seconds(raw.timeoutSeconds, 1),
            "failureThreshold": max(1, raw.failureThreshold)}


def _container(d: DesiredDeployment, config: Configuration, serving: bool) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": image_of(d), "imagePullPolicy": "IfNotPresent"}
    if config.env:
        container["env"] = config.env
    if serving and d.endpoints:
        seen: dict[int, dict[str, Any]] = {}
        for ep in d.endpoints:
            seen.setdefault(ep.port, {"name": port_name(ep.type, ep.port), "containerPort": ep.port,
                                      "protocol": protocol(ep.type)})
        container["ports"] = list(seen.values())
    amounts = {k: v for k, v in (("cpu", d.resources.cpu), ("memory", d.resources.memory)) if v}
    if amounts:  # the local data plane's limits are hard ones: so are these, and requests match them
        container["resources"] = {"requests": amounts, "limits": amounts}
    if serving:
        first = d.endpoints[0].port if d.endpoints else None
        health = d.health
        readiness = probe(health.readiness if health is not None else None, first)
        if readiness is None and first is not None and d.endpoints[0].type != "UDP":  # (UDP: nothing to connect)
            readiness = {"tcpSocket": {"port": first}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 3}
        if readiness is not None:
            container["readinessProbe"] = readiness
        liveness = probe(health.liveness if health is not None else None, first)
        if liveness is not None:
            container["livenessProbe"] = liveness
    container["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True, "runAsNonRoot": True}
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 (the container's own, an emptyDir)
    mounts += [{"name": "secret" if secret else "config", "mountPath": path, "subPath": key, "readOnly": True}
               for key, path, secret in config.files]
    container["volumeMounts"] = mounts
    return container


def pod_template(d: DesiredDeployment, config: Configuration, labels: dict[str, str], *, serving: bool,
                 restart: str) -> dict[str, Any]:
    """The pod template of a deployment's pods (``serving``: a service's, with ports and probes)."""
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    name = names.workload(d.component, d.version)
    if any(not secret for _, _, secret in config.files):
        volumes.append({"name": "config", "configMap": {"name": name, "defaultMode": 0o444}})
    if any(secret for _, _, secret in config.files):
        volumes.append({"name": "secret", "secret": {"secretName": name, "defaultMode": 0o440}})
    grace = d.health.gracePeriodSeconds if d.health is not None else 10.0
    return {
        "metadata": {"labels": labels, "annotations": {CHECKSUM: config.checksum}},
        "spec": {
            "containers": [_container(d, config, serving)],
            "volumes": volumes,
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": _seconds(grace, 0),
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
                                "seccompProfile": {"type": "RuntimeDefault"}},
        },
    }


def deployment(d: DesiredDeployment, namespace: str, config: Configuration, labels: dict[str, str], *,
               autoscaled: bool = False) -> dict[str, Any]:
    """A service's Deployment. ``autoscaled``: the seam for ``scaling`` (issue 22): an HPA beside it owns the
    replica count, so ``replicas`` is left out (a server-side apply would otherwise fight the HPA)."""
    spec: dict[str, Any] = {
        "selector": {"matchLabels": names.selector(d.component, d.version)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "revisionHistoryLimit": 3,
        "template": pod_template(d, config, labels, serving=True, restart="Always"),
    }
    if not autoscaled:
        spec = {"replicas": d.replicas, **spec}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": names.workload(d.component, d.version), "namespace": namespace, "labels": labels},
            "spec": spec}


def _job_spec(d: DesiredDeployment, config: Configuration, labels: dict[str, str]) -> dict[str, Any]:
    return {"backoffLimit": 0, "template": pod_template(d, config, labels, serving=False, restart="Never")}


def cron_job(d: DesiredDeployment, namespace: str, config: Configuration, labels: dict[str, str]) -> dict[str, Any]:
    """A scheduled task's CronJob: its schedule, time zone and concurrency policy (Forbid: a run is skipped
    while one runs; Allow). ``Blocked`` for what Kubernetes cannot schedule: a six-field cron (seconds)."""
    schedule = d.schedule
    if schedule is None:
        raise Blocked("a scheduled task without a schedule")
    if len(schedule.cron.split()) != 5:
        raise Blocked(f"the schedule '{schedule.cron}' has seconds: Kubernetes runs CronJobs by the minute "
                      "(five fields)")
    if schedule.concurrencyPolicy not in POLICIES:
        raise Blocked(f"the concurrency policy '{schedule.concurrencyPolicy}' is neither Forbid nor Allow")
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": names.workload(d.component, d.version), "namespace": namespace, "labels": labels},
            "spec": {"schedule": schedule.cron, "timeZone": schedule.timezone,
                     "concurrencyPolicy": schedule.concurrencyPolicy,
                     "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
                     "jobTemplate": {"metadata": {"labels": labels}, "spec": _job_spec(d, config, labels)}}}


def run_job(d: DesiredDeployment, run: DesiredRun, namespace: str, config: Configuration,
            labels: dict[str, str]) -> dict[str, Any]:
    """A manual run's Job, named from the run's id: never retried (``backoffLimit`` 0: a run runs once), kept
    ``RUN_TTL`` seconds after it ends."""
    labels = {**labels, names.RUN: names.label_value(run.id)}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": names.run(run.id), "namespace": namespace, "labels": labels},
            "spec": {**_job_spec(d, config, labels), "ttlSecondsAfterFinished": RUN_TTL}}
