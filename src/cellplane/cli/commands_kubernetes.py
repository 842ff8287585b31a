"""`dataplane manifest --kubernetes`: the install manifest of a Kubernetes data plane (kubernetes/install.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
import yaml

from cellplane import __version__
from cellplane.cli.app import state
from cellplane.cli.client import CliError
from cellplane.cli.commands_dataplane import _read_token, dataplane
from cellplane.cli.output import err
from cellplane.kubernetes import names
from cellplane.kubernetes.install import TOKEN_KEY, TOKEN_SECRET, InstallOptions, manifest
from cellplane.kubernetes.layout import ClusterLayout

DEFAULT_IMAGE = f"cellplane/agent:{__version__}"

MANIFEST_HELP = (
    "Print the install manifest of a Kubernetes data plane (YAML, one document per object) for `kubectl apply -f "
    "-`: its namespace, the agent's service account and least-privilege RBAC, the agent's Deployment and data "
    "volume, and per --environment the Cellplane gateway Services that cells' NetworkPolicies and routes point at "
    "(docs/kubernetes.md, \"Installing a data plane into a cluster\").\n\n"
    "With --token-file the agent's control-plane token is IN the printed YAML (as a Secret): it is there only "
    "because you asked for a complete install; write it to a file only you can read, or leave --token-file out "
    f"and create the Secret yourself: kubectl -n NAMESPACE create secret generic {TOKEN_SECRET} "
    f"--from-file={TOKEN_KEY}=FILE.")


@dataplane.command("manifest", help=MANIFEST_HELP)
def manifest_command(
    ctx: typer.Context,
    kubernetes: bool = typer.Option(False, "--kubernetes", help="a Kubernetes data plane's manifest (the only kind)"),
    name: str = typer.Option(..., "--name", help="the data plane's name (as `dataplane token --name`)"),
    namespace: str = typer.Option("cellplane-system", "--namespace", help="the data plane's system namespace"),
    image: str = typer.Option(DEFAULT_IMAGE, "--image", metavar="REF",
                              help="the agent's image (`make agent-image REGISTRY=...` prints it, by digest)"),
    control_plane: str = typer.Option(None, "--control-plane", metavar="URL",
                                      help="the control plane's URL as the agent's pod reaches it (default: "
                                      "--server, CELLPLANE_SERVER or the login context's)"),
    token_file: Path = typer.Option(None, "--token-file", metavar="FILE",
                                    help="put this agent token (`dataplane token --output FILE`) in the manifest as "
                                    f"the Secret {TOKEN_SECRET}; without it, create that Secret yourself"),
    external_url: str = typer.Option(None, "--external-url", metavar="URL",
                                     help="the agent's --external-url: the base URL under which users reach the "
                                     "external gateway (the cluster's Gateway or load balancer)"),
    internal_url: str = typer.Option(None, "--internal-url", metavar="URL", help="the agent's --internal-url"),
    environment: list[str] = typer.Option([], "--environment", metavar="ENV",
                                          help="an environment whose two gateway Services to install (repeat)"),
    ephemeral_data: bool = typer.Option(False, "--ephemeral-data",
                                        help="the agent's data directory in an emptyDir instead of a 1Gi "
                                        "PersistentVolumeClaim (a restarted agent then starts without its cached "
                                        "desired state: it waits for the control plane)"),
    storage_class: str = typer.Option(None, "--storage-class", help="the data volume's StorageClass "
                                      "(default: the cluster's default class)"),
    serve_gateways: bool = typer.Option(True, "--serve-gateways/--no-serve-gateways",
                                        help="the agent's pod serves the Cellplane gateways the gateway Services "
                                        "select (docs/kubernetes.md, 'The gateways in the cluster'); without, the "
                                        "Services have no endpoints until something else serves them"),
) -> None:
    if not kubernetes:
        raise CliError("dataplane manifest: only Kubernetes data planes have one; pass --kubernetes")
    if not names.is_dns_label(namespace):
        raise CliError(f"--namespace {namespace}: give a DNS label (lowercase letters, digits and '-')")
    st = state(ctx)
    url = (control_plane or st.settings.server).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise CliError(f"--control-plane {url}: give a URL such as https://cellplane.example.com")
    if "127.0.0.1" in url or "localhost" in url:
        err.print(f"warning: the agent's pod reaches {url} inside its own network namespace; give --control-plane "
                  "a URL the cluster reaches")
    for flag, given in (("--external-url", external_url), ("--internal-url", internal_url)):
        if given is not None and not given.startswith(("http://", "https://")):
            raise CliError(f"{flag} {given}: give a URL such as https://apps.example.com")
    token = _read_token(token_file) if token_file else None
    options = InstallOptions(name=name, organization=st.org, controlplane=url, image=image, token=token,
                             external_url=external_url, internal_url=internal_url,
                             environments=tuple(dict.fromkeys(environment)), persistent=not ephemeral_data,
                             storage_class=storage_class, layout=ClusterLayout(system_namespace=namespace),
                             serve_gateways=serve_gateways)
    sys.stdout.write(yaml.safe_dump_all(manifest(options), sort_keys=False, explicit_start=True))
    if token is None:
        err.print(f"the agent reads its token from the Secret {namespace}/{TOKEN_SECRET} (key {TOKEN_KEY}): create "
                  f"it with kubectl -n {namespace} create secret generic {TOKEN_SECRET} --from-file={TOKEN_KEY}=FILE")
