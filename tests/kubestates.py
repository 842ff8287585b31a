"""Desired states for the Kubernetes renderer's tests, built with the contract's models as the control plane sends
them: secrets sealed to a data plane's real key (``cellplane.sealing``), so rendering opens them as the agent does.

``SECRETS`` are the plaintexts sealed into ``shop_state``: a test looks for them in every rendered object.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cellplane.contract import (
    DesiredArtifact,
    DesiredConnection,
    DesiredConnectionEnv,
    DesiredCredentials,
    DesiredDeployment,
    DesiredEndpoint,
    DesiredEnv,
    DesiredEnvironment,
    DesiredFile,
    DesiredGrant,
    DesiredHealth,
    DesiredProbe,
    DesiredResources,
    DesiredRun,
    DesiredSchedule,
    DesiredState,
    DesiredTarget,
    GrantTarget,
    SealedValue,
)
from cellplane.sealing import seal

DB_PASSWORD = "db-password-7f3e9a1c-plaintext"
TLS_KEY = "-----BEGIN PRIVATE KEY-----\nplaintext-key-material-55d0\n-----END PRIVATE KEY-----\n"
CONSUMER_SECRET = "consumer-secret-b81c4e2d-plaintext"
SECRETS = (DB_PASSWORD, TLS_KEY, CONSUMER_SECRET)
IMAGE = "registry.example.com/acme/{component}@sha256:" + "ab" * 32


def endpoint(name: str, port: int, visibility: str, type_: str = "REST", base_path: str = "/") -> DesiredEndpoint:
    return DesiredEndpoint(name=name, port=port, type=type_, basePath=base_path, visibility=[visibility])


def deployment(project: str, component: str, *, environment: str = "development", type_: str = "service",
               version: str = "v1", image: bool = True, **fields: Any) -> DesiredDeployment:
    """A deployment with the fields a test does not care about filled in."""
    values: dict[str, Any] = {
        "id": f"dep_{project}_{component}_{environment}", "environment": environment, "project": project,
        "component": component, "track": "main", "type": type_, "release": f"rel_{component}_1", "version": version,
        "artifact": DesiredArtifact(digest="sha256:" + "cd" * 32,
                                    image=IMAGE.format(component=component) if image else None),
        "replicas": 1, "resources": DesiredResources(), "health": None, "endpoints": [], "env": [], "files": [],
        "connections": [], "blocked": None, "schedule": None}
    values.update(fields)
    return DesiredDeployment(**values)


def sealed(key: X25519PrivateKey, plaintext: str, d_place: str) -> str:
    return seal(key.public_key(), plaintext, d_place)


def shop_deployments(key: X25519PrivateKey, *, organization: str = "acme", project: str = "shop",
                     environment: str = "development", log_level: str = "debug",
                     db_password: str = DB_PASSWORD) -> list[DesiredDeployment]:
    """A project's deployments: a service with two endpoints of each visibility, plain and secret variables and
    files, a connection of each kind; the service its cell connection calls; a scheduled and a manual task."""
    here = f"{environment}/{project}/orders"
    orders = deployment(
        project, "orders", environment=environment, replicas=2,
        resources=DesiredResources(cpu="500m", memory="256Mi"),
        health=DesiredHealth(readiness=DesiredProbe(path="/api/healthz", periodSeconds=2.0, timeoutSeconds=0.5),
                             liveness=DesiredProbe(port=8080, initialDelaySeconds=5.0), gracePeriodSeconds=15.0),
        endpoints=[endpoint("api", 8080, "Public", base_path="/api"),
                   endpoint("graphql", 8083, "Public", "GraphQL", "/graphql"),
                   endpoint("admin", 8081, "Organization", base_path="/admin"),
                   endpoint("grpc", 9090, "Organization", "gRPC"),
                   endpoint("internal", 8082, "Project", base_path="/internal"),
                   endpoint("metrics", 9100, "Project", "TCP")],
        env=[DesiredEnv(name="LOG_LEVEL", value=log_level),
             DesiredEnv(name="DB_PASSWORD", sealed=sealed(key, db_password, f"{here}/DB_PASSWORD"))],
        files=[DesiredFile(name="settings", mountPath="/app/config/settings.toml", content="mode = 'prod'\n"),
               DesiredFile(name="tls-key", mountPath="/app/tls/key.pem",
                           sealed=sealed(key, TLS_KEY, f"{here}/tls-key"))],
        connections=[
            DesiredConnection(name="inventory", state="resolved", via="cell",
                              target=DesiredTarget(project=project, component="inventory", endpoint="http",
                                                   basePath="/stock", version="v1"),
                              env=[DesiredConnectionEnv(from_="ServiceURL", to="INVENTORY_URL")]),
            DesiredConnection(name="billing", state="resolved", via="internal",
                              target=DesiredTarget(project="billing", component="invoices", endpoint="api",
                                                   basePath="/", version="v2"),
                              credentials=DesiredCredentials(consumerKey="ck_billing", consumerSecret=SealedValue(
                                  sealed=sealed(key, CONSUMER_SECRET, f"{here}/connection:billing"))),
                              env=[DesiredConnectionEnv(from_="ServiceURL", to="BILLING_URL"),
                                   DesiredConnectionEnv(from_="ConsumerKey", to="BILLING_KEY"),
                                   DesiredConnectionEnv(from_="ConsumerSecret", to="BILLING_SECRET"),
                                   DesiredConnectionEnv(from_="TokenURL", to="BILLING_TOKEN_URL")]),
            DesiredConnection(name="weather", state="resolved", via="url", url="https://api.weather.example/v3",
                              env=[DesiredConnectionEnv(from_="ServiceURL", to="WEATHER_URL")]),
            DesiredConnection(name="legacy", state="resolved", via="url", url="http://10.20.30.40:5432/db",
                              env=[DesiredConnectionEnv(from_="ServiceURL", to="LEGACY_URL")]),
        ])
    inventory = deployment(project, "inventory", environment=environment,
                           endpoints=[endpoint("http", 8080, "Project", base_path="/stock")])
    nightly = deployment(project, "nightly", environment=environment, type_="scheduled-task",
                         schedule=DesiredSchedule(cron="0 3 * * *", timezone="Europe/Berlin",
                                                  concurrencyPolicy="Forbid"),
                         env=[DesiredEnv(name="BATCH", value="full")])
    migrate = deployment(project, "migrate", environment=environment, type_="manual-task",
                         env=[DesiredEnv(name="DB_PASSWORD", sealed=sealed(
                             key, db_password, f"{environment}/{project}/migrate/DB_PASSWORD"))])
    return [orders, inventory, nightly, migrate]


def shop_state(key: X25519PrivateKey, *, organization: str = "acme", **options: Any) -> DesiredState:
    """``shop_deployments`` as one data plane's desired state, with the manual task's run queued."""
    deployments = shop_deployments(key, organization=organization, **options)
    environment = deployments[0].environment
    project = deployments[0].project
    return DesiredState(
        revision="r1", organization=organization, dataPlane="cluster-1",
        environments=[DesiredEnvironment(name=environment, production=False)],
        deployments=deployments,
        grants=[DesiredGrant(consumerKey="ck_billing", secretDigest="00" * 32, environment=environment,
                             project=project, component="orders",
                             target=GrantTarget(project="billing", component="invoices", endpoint="api"))],
        runs=[DesiredRun(id="run_0123456789abcdef", deployment=deployments[3].id, environment=environment,
                         project=project, component="migrate", requestedAt="2026-12-07T16:00:00+00:00")])
