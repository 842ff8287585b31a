"""`idp`: an organization's OpenID Connect providers (single sign-on): apply, list, get, delete, and link or unlink an
existing user to an account of a provider.

The client secret never appears on the command line: it is read from a file (``--client-secret-file``, ``-`` for
stdin) or prompted for (``--client-secret-prompt``); left out, the stored one is kept.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from cellplane.cli.app import app, state
from cellplane.cli.client import CliError
from cellplane.cli.commands_deploy import OUTPUT
from cellplane.cli.output import Format, dump, out, table

idp = typer.Typer(help="Single sign-on: the organization's OpenID Connect providers, and the roles their groups get.",
                  no_args_is_help=True)
app.add_typer(idp, name="idp")


def _base(st: Any) -> str:
    return f"/organizations/{st.org}/identity-providers"


def parse_group_role(text: str) -> dict[str, str]:
    """``GROUP=ROLE``, ``GROUP=ROLE,project=P`` or ``GROUP=ROLE,environment=E`` as the API's mapping."""
    head, *scopes = text.split(",")
    group, sep, role = head.rpartition("=")
    if not sep or not group or not role:
        raise CliError(f"--group-role: give GROUP=ROLE[,project=P|,environment=E], not '{text}'")
    mapping = {"group": group, "role": role}
    for scope in scopes:
        key, sep, value = scope.partition("=")
        if not sep or key not in ("project", "environment") or not value:
            raise CliError(f"--group-role: '{scope}' is not project=NAME or environment=NAME (in '{text}')")
        mapping[key] = value
    return mapping


def _secret(path: Path | None, prompt: bool, public: bool) -> str | None:
    if sum((path is not None, prompt, public)) > 1:
        raise CliError("give one of --client-secret-file, --client-secret-prompt and --public-client")
    if public:
        return ""
    if prompt:
        return str(typer.prompt("client secret", hide_input=True))
    if path is None:
        return None
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as e:
        raise CliError(f"--client-secret-file: cannot read {path}: {e.strerror}") from None
    secret = text.strip()
    if not secret:
        raise CliError(f"--client-secret-file: {path} is empty")
    return secret


def _mapping_text(m: dict[str, Any]) -> str:
    where = f" on project {m['project']}" if m.get("project") else (
        f" in environment {m['environment']}" if m.get("environment") else "")
    return f"{m.get('group')} -> {m.get('role')}{where}"


@idp.command("apply")
def apply(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="the provider's name in the organization (shown on the sign-in page)"),
    issuer: str = typer.Option(..., "--issuer", help="the issuer URL (https): its discovery document is "
                               "<issuer>/.well-known/openid-configuration"),
    client_id: str = typer.Option(..., "--client-id", help="the client (application) id registered at the provider"),
    client_secret_file: Path = typer.Option(None, "--client-secret-file", help="read the client secret from this "
                                            "file ('-': stdin); left out, the stored secret is kept"),
    client_secret_prompt: bool = typer.Option(False, "--client-secret-prompt", help="ask for the client secret"),
    public_client: bool = typer.Option(False, "--public-client", help="no client secret (PKCE alone); removes a "
                                       "stored one"),
    scope: list[str] = typer.Option(None, "--scope", help="a scope to request (repeat); default: openid email "
                                    "profile"),
    groups_claim: str = typer.Option("groups", "--groups-claim", help="the claim listing the user's groups"),
    group_role: list[str] = typer.Option(None, "--group-role", help="GROUP=ROLE[,project=P|,environment=E]: "
                                         "members of GROUP get ROLE (repeat); replaces the provider's mappings"),
    create_users: bool = typer.Option(False, "--create-users/--no-create-users",
                                      help="create a user at a first sign-in"),
    disabled: bool = typer.Option(False, "--disabled/--enabled", help="disabled: no sign-in through it, and the "
                                  "console sessions it started end at once"),
    output: Format = OUTPUT,
) -> None:
    """Create or replace an identity provider of the organization (what is not given takes its default)."""
    st = state(ctx)
    body: dict[str, Any] = {"issuer": issuer, "clientId": client_id, "groupsClaim": groups_claim,
                            "groupRoles": [parse_group_role(g) for g in group_role or []],
                            "createUsers": create_users, "disabled": disabled}
    if scope:
        body["scopes"] = list(scope)
    secret = _secret(client_secret_file, client_secret_prompt, public_client)
    if secret is not None:
        body["clientSecret"] = secret
    result = st.client.put(f"{_base(st)}/{name}", body)
    if output != Format.table:
        return dump(result, output)
    out.print(f"identity provider {escape(st.org)}/{escape(result.get('name') or name)} applied "
              f"({'with' if result.get('clientSecretSet') else 'without'} a client secret"
              f"{'; disabled' if result.get('disabled') else ''})")
    out.print(f"redirect URI: {escape(st.settings.server.rstrip('/') + (result.get('redirectPath') or ''))} "
              "(register it at the provider)")


COLUMNS = [("NAME", lambda p: p.get("name")), ("ISSUER", lambda p: p.get("issuer")),
           ("CLIENT", lambda p: p.get("clientId")), ("SECRET", lambda p: "set" if p.get("clientSecretSet") else "-"),
           ("GROUPS", lambda p: "; ".join(_mapping_text(m) for m in p.get("groupRoles") or []) or None),
           ("CREATE-USERS", lambda p: "yes" if p.get("createUsers") else "no"),
           ("DISABLED", lambda p: "yes" if p.get("disabled") else "no")]


@idp.command("list")
def list_(ctx: typer.Context, output: Format = OUTPUT) -> None:
    """The organization's identity providers."""
    st = state(ctx)
    answer = st.client.get(_base(st))
    if output != Format.table:
        return dump(answer, output)
    table(answer.get("items") or [], COLUMNS,
          empty="No identity providers. Add one: cellplane idp apply NAME --issuer URL --client-id ID "
          "--client-secret-file FILE")


@idp.command("get")
def get(ctx: typer.Context, name: str = typer.Argument(...), output: Format = OUTPUT) -> None:
    """One identity provider (its client secret is never shown: only whether one is set)."""
    st = state(ctx)
    p = st.client.get(f"{_base(st)}/{name}")
    if output != Format.table:
        return dump(p, output)
    out.print(f"[bold]{escape(st.org)}/{escape(p.get('name') or name)}[/]")
    rows = [("issuer", p.get("issuer")), ("client id", p.get("clientId")),
            ("secret", "set" if p.get("clientSecretSet") else "none (public client)"),
            ("scopes", " ".join(p.get("scopes") or [])), ("groups claim", p.get("groupsClaim")),
            ("create users", "yes" if p.get("createUsers") else "no"),
            ("disabled", "yes" if p.get("disabled") else "no"),
            ("redirect URI", st.settings.server.rstrip("/") + (p.get("redirectPath") or ""))]
    for key, value in rows:
        out.print(f"  {key:<13} {escape(str(value or '-'))}")
    for m in p.get("groupRoles") or []:
        out.print(f"  {'group':<13} {escape(_mapping_text(m))}")
    for link in p.get("links") or []:
        last = link.get("lastSignInAt") or "never signed in"
        out.print(f"  {'linked':<13} {escape(link.get('user') or '')} <- {escape(link.get('subject') or '')} "
                  f"(last sign-in: {escape(last)})")


@idp.command("delete")
def delete(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Delete an identity provider: its users stay, the roles its groups gave them go."""
    st = state(ctx)
    st.client.delete(f"{_base(st)}/{name}")
    out.print(f"identity provider {escape(st.org)}/{escape(name)} deleted")


@idp.command("link")
def link(ctx: typer.Context, name: str = typer.Argument(..., help="the identity provider"),
         user: str = typer.Option(..., "--user", help="an existing Cellplane user"),
         subject: str = typer.Option(..., "--subject", help="the account's subject at the provider (the ID token's "
                                     "sub claim)"),
         output: Format = OUTPUT) -> None:
    """Let the provider's account SUBJECT sign in as the existing user (providers that create no users)."""
    st = state(ctx)
    result = st.client.post(f"{_base(st)}/{name}/links", {"user": user, "subject": subject})
    if output != Format.table:
        return dump(result, output)
    out.print(f"user {escape(user)} linked to account {escape(subject)} of {escape(st.org)}/{escape(name)}")


@idp.command("unlink")
def unlink(ctx: typer.Context, name: str = typer.Argument(..., help="the identity provider"),
           user: str = typer.Option(..., "--user", help="the linked user")) -> None:
    """The user no longer signs in through the provider (the roles its groups gave go, and its sessions end)."""
    st = state(ctx)
    st.client.delete(f"{_base(st)}/{name}/links/{user}")
    out.print(f"user {escape(user)} unlinked from {escape(st.org)}/{escape(name)}")
