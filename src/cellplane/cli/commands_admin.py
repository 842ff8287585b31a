"""`config`, `create user`, `create token`, `grant`, `revoke`, `rolebindings`, `audit`, `admin rotate-key`,
`admin recover-token`, `user password`."""

from __future__ import annotations

import getpass
import socket
import sys
from pathlib import Path

import typer

from cellplane.cli.app import app, state
from cellplane.cli.client import CliError
from cellplane.cli.commands_resources import OUTPUT, PROJECT, create
from cellplane.cli.output import Format, dump, err, out, table

config = typer.Typer(help="Configuration values and secrets of a component.", no_args_is_help=True)
admin = typer.Typer(help="Platform administration.", no_args_is_help=True)
app.add_typer(config, name="config")
app.add_typer(admin, name="admin")
ENV = typer.Option(None, "--env", "-e", help="environment (default: every environment)")


def _config_path(ctx: typer.Context, component: str, project: str | None) -> str:
    st = state(ctx)
    return f"/organizations/{st.org}/projects/{st.project(project)}/components/{component}/config"


@config.command("set")
def config_set(
    ctx: typer.Context,
    component: str = typer.Argument(...),
    assignments: list[str] = typer.Argument(..., help="KEY=VALUE (VALUE '-' reads it from stdin)"),
    env: str = ENV,
    secret: bool = typer.Option(False, "--secret", help="encrypt at rest and never show the value"),
    project: str = PROJECT,
) -> None:
    """Set configuration values; with --secret they are encrypted and shown masked from then on."""
    pairs = []
    if sum(item.partition("=")[2] == "-" for item in assignments) > 1:
        raise CliError("only one KEY=- can read its value from stdin")
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"'{item}' is not KEY=VALUE")
        if value == "-":
            value = sys.stdin.read().rstrip("\n")
        pairs.append((key, value))
    path = _config_path(ctx, component, project)
    for key, value in pairs:
        result = state(ctx).client.put(f"{path}/{key}", {"value": value, "secret": secret}, env=env)
        where = f"in {env}" if env else "in every environment"
        what = "unchanged" if not result["changed"] else f"set (version {result['version']})"
        out.print(f"{key} {what} {where}" + (r" \[secret]" if secret else ""))


@config.command("get")
def config_get(ctx: typer.Context, component: str = typer.Argument(...), env: str = ENV, project: str = PROJECT,
               output: Format = OUTPUT) -> None:
    """Show a component's configuration (what it sees in --env); secrets are always masked."""
    items = state(ctx).client.get(_config_path(ctx, component, project), env=env)["items"]
    if output != Format.table:
        return dump(items, output)
    table(items, [("KEY", lambda c: c["key"]), ("VALUE", lambda c: c.get("value")), ("SECRET", lambda c: c["secret"]),
                  ("ENVIRONMENT", lambda c: c.get("environment") or "all"), ("VERSION", lambda c: c.get("version")),
                  ("SOURCE", lambda c: c.get("source"))], empty="No configuration.")


@config.command("unset")
def config_unset(ctx: typer.Context, component: str = typer.Argument(...), key: str = typer.Argument(...),
                 env: str = ENV, project: str = PROJECT) -> None:
    """Remove a value set with `config set`."""
    state(ctx).client.delete(f"{_config_path(ctx, component, project)}/{key}", env=env)
    out.print(f"{key} unset" + (f" in {env}" if env else ""))


@create.command("user")
def create_user(ctx: typer.Context, name: str = typer.Argument(...), email: str = typer.Option(None, "--email"),
                superuser: bool = typer.Option(False, "--superuser", help="platform administrator")) -> None:
    """Create a user (then: `create token --user NAME` and `grant ROLE --user NAME`)."""
    state(ctx).client.post("/users", {"name": name, "email": email, "superuser": superuser})
    out.print(f"user/{name} created")


@create.command("token")
def create_token(ctx: typer.Context, user: str = typer.Option(None, "--user", help="default: yourself"),
                 name: str = typer.Option("default", "--name"),
                 expires_in_days: int = typer.Option(None, "--expires-in-days", min=1)) -> None:
    """Issue an API token. It is printed once, on stdout alone, and never stored in plaintext."""
    client = state(ctx).client
    user = user or client.get("/whoami")["user"]
    body = {"name": name} | ({"expiresInDays": expires_in_days} if expires_in_days else {})
    result = client.post(f"/users/{user}/tokens", body)
    err.print(f"token {result['id']} for {user} (shown once; store it safely):")
    print(result["token"])


@app.command()
def grant(ctx: typer.Context, role: str = typer.Argument(..., help="admin, developer, approver or viewer"),
          user: str = typer.Option(..., "--user"), project: str = typer.Option(None, "--project", "-p"),
          env: str = typer.Option(None, "--env", "-e")) -> None:
    """Grant a role on the organization, or on one project or environment of it."""
    st = state(ctx)
    body = {"user": user, "role": role, "project": project, "environment": env}
    result = st.client.post(f"/organizations/{st.org}/rolebindings", body)
    scope = f"project {project}" if project else f"environment {env}" if env else f"organization {st.org}"
    out.print(f"rolebinding/{result['id']} created: {role} for {user} on {scope}")


@app.command()
def revoke(ctx: typer.Context, binding: str = typer.Argument(..., help="role binding id")) -> None:
    """Remove a role binding."""
    st = state(ctx)
    st.client.delete(f"/organizations/{st.org}/rolebindings/{binding}")
    out.print(f"rolebinding/{binding} deleted")


@app.command()
def rolebindings(ctx: typer.Context, output: Format = OUTPUT) -> None:
    """List the organization's role bindings."""
    st = state(ctx)
    items = st.client.get(f"/organizations/{st.org}/rolebindings")["items"]
    if output != Format.table:
        return dump(items, output)
    table(items, [("ID", lambda b: b["id"]), ("USER", lambda b: b["user"]), ("ROLE", lambda b: b["role"]),
                  ("PROJECT", lambda b: b.get("project")), ("ENVIRONMENT", lambda b: b.get("environment"))],
          empty="No role bindings.")


@app.command()
def audit(ctx: typer.Context, limit: int = typer.Option(50, "--limit", min=1, max=1000),
          actor: str = typer.Option(None, "--actor"), kind: str = typer.Option(None, "--kind"),
          all_orgs: bool = typer.Option(False, "--all-orgs", help="every organization you may see"),
          output: Format = OUTPUT) -> None:
    """Show audit events, newest first: who did what to which resource, when, and the outcome."""
    st = state(ctx)
    items = st.client.get("/audit", limit=limit, actor=actor, kind=kind,
                          organization=None if all_orgs else st.org)["items"]
    if output != Format.table:
        return dump(items, output)
    table(items, [("TIME", lambda a: a["at"][:19].replace("T", " ")), ("ACTOR", lambda a: a["actor"]),
                  ("ACTION", lambda a: a["action"]),
                  ("RESOURCE", lambda a: "/".join(x for x in (a.get("kind"), a.get("project"), a.get("name")) if x)),
                  ("OUTCOME", lambda a: a["outcome"]), ("MESSAGE", lambda a: a.get("message"))],
          empty="No audit events.")


@admin.command("rotate-key")
def rotate_key(ctx: typer.Context) -> None:
    """Re-encrypt every secret under a new master key, while the control plane keeps serving."""
    result = state(ctx).client.post("/admin/rotate-key", {})
    out.print(f"master key rotated: new key {result['keyId']}, {result['reencrypted']} secrets re-encrypted, "
              f"retired {', '.join(result['retiredKeys']) or 'no keys'}")


@admin.command("recover-token")
def recover_token(
    data_dir: Path = typer.Option(None, "--data-dir",
                                  help="the control plane's data directory [env: CELLPLANE_HOME; default .cellplane]"),
    database_url: str = typer.Option(None, "--database-url", envvar="CELLPLANE_DATABASE_URL",
                                     help="the control plane's PostgreSQL database (default: SQLite in --data-dir)"),
    user: str = typer.Option("admin", "--user", help="the platform administrator (created as one when absent)"),
    output: Path = typer.Option(None, "--output", "-o", metavar="FILE",
                                help="write the token to FILE (mode 0600), e.g. DATA_DIR/admin.token, instead of "
                                "printing it"),
) -> None:
    """Break glass: make a new platform administrator's token straight from the data directory (its database and
    token.key), when no admin token is left. Needs no running control plane and no token: run it on the control
    plane's machine as its OS user. Audited (action token.recover)."""
    from cellplane.cli.commands_dataplane import save_token
    from cellplane.cli.commands_server import default_data_dir
    from cellplane.controlplane.recovery import recover_admin_token
    from cellplane.errors import CellplaneError

    data_dir = (data_dir or default_data_dir()).resolve()
    if not data_dir.is_dir():
        raise CliError(f"--data-dir {data_dir}: no such directory")
    if database_url is None and not (data_dir / "cellplane.db").is_file():
        raise CliError(f"--data-dir {data_dir}: no database (cellplane.db) there; give --database-url for PostgreSQL")
    actor = f"recover-token:{getpass.getuser()}@{socket.gethostname()}"
    try:
        recovered = recover_admin_token(data_dir, database_url, user, actor)
    except CellplaneError as e:
        raise CliError(e.message) from None
    secret = recovered.token
    what = (f"token {recovered.token_id} for platform administrator '{user}'"
            + (" (user created)" if recovered.created else ""))
    if output is None:
        err.print(f"{what} (shown once; store it safely):")
        print(secret)
        return
    save_token(output, secret)
    err.print(f"{what} written to {output} (mode 0600)")


user = typer.Typer(help="Users: console passwords.", no_args_is_help=True)
app.add_typer(user, name="user")


def _read_password(prompt: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().rstrip("\n")


@user.command("password")
def user_password(ctx: typer.Context, name: str = typer.Argument(None, help="the user (default: yourself)")) -> None:
    """Set a user's console password: prompted twice, never an argument (from a pipe: the lines of stdin). Users
    setting their own give their current one first (when they have one); a platform administrator sets anyone's."""
    client = state(ctx).client
    me = client.get("/whoami")
    name = name or me["user"]
    body: dict[str, str] = {}
    if name == me["user"] and not me.get("superuser"):
        body["currentPassword"] = _read_password("Current password (empty if you have none): ")
    password = _read_password(f"New password for {name}: ")
    again = _read_password("Again: ")
    if password != again:
        raise CliError("the two passwords differ; nothing changed")
    if not password:
        raise CliError("no password given; nothing changed")
    client.put(f"/users/{name}/password", {"password": password, **body})
    err.print(f"password of user/{name} set")
