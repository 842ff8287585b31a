"""Routes for organizations' OpenID Connect providers (single sign-on): create or replace, read, list, delete.

Organization admins only: reading needs ``identityproviders:read`` and changing ``identityproviders:update`` or
``identityproviders:delete``, which no role but admin holds (viewers' ``*:get`` does not reach a ``read``). The
client secret is write-only: answers say ``clientSecretSet``. The service is ``controlplane.identityproviders``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from cellplane.controlplane import identityproviders as idp
from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.declare import ORGANIZATION, Call, Subject, documented, found, requires
from cellplane.controlplane.api.deps import NamePath, NewNamePath
from cellplane.controlplane.api.routing import api_router
from cellplane.controlplane.rbac import ROLE_NAMES
from cellplane.model.meta import DNS_LABEL

router = api_router(tags=["identity-providers"])
BASE = "/organizations/{org}/identity-providers"

# https, or http on a loopback address (idp.issuer_problem says the same in its messages); no query, fragment or
# credentials
ISSUER = (r"^(https://[A-Za-z0-9.-]+|http://(localhost|127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|\[::1\]))"
          r"(:[0-9]{1,5})?(/[-A-Za-z0-9._~%!$&'()*+,;=:@/]*)?$")
SCOPE = r"^[\x21\x23-\x5b\x5d-\x7e]+$"
Name = Annotated[str, Field(max_length=63, pattern=DNS_LABEL.pattern)]


class GroupRoleRequest(BaseModel):
    """Members of ``group`` hold ``role`` on the organization, or on one project or one environment of it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"not": {
        "required": ["project", "environment"],
        "properties": {"project": {"type": "string", "minLength": 1},
                       "environment": {"type": "string", "minLength": 1}}}})
    group: str = Field(min_length=1, max_length=255, description="a group as the provider names it in the claim")
    role: Annotated[str, WithJsonSchema({"type": "string", "enum": list(ROLE_NAMES)})] = Field(max_length=20)
    project: Name | None = Field(default=None, description="the binding's project (must exist)")
    environment: Name | None = Field(default=None, description="the binding's environment (must exist)")


class IdentityProviderRequest(schemas.JsonBody):
    """An OpenID Connect provider of the organization. Register ``<console URL>/console/sso/callback`` as the
    client's redirect URI at the provider."""

    model_config = ConfigDict(extra="forbid", strict=True)
    issuer: Annotated[str, WithJsonSchema({"type": "string", "maxLength": 1024, "pattern": ISSUER})] = Field(
        max_length=1024, description="the provider's issuer URL: its discovery document is "
        "<issuer>/.well-known/openid-configuration (https; http only on a loopback address)")
    clientId: str = Field(min_length=1, max_length=255)
    clientSecret: str | None = Field(default=None, max_length=4096, json_schema_extra={"writeOnly": True},
                                     description="write-only: never returned; left out, the stored one is kept; "
                                     "'' removes it (a public client, PKCE alone)")
    scopes: Annotated[list[Annotated[str, Field(max_length=100, pattern=SCOPE)]], WithJsonSchema({
        "type": "array", "maxItems": 20, "contains": {"const": "openid"},
        "items": {"type": "string", "maxLength": 100, "pattern": SCOPE}})] = Field(
        default_factory=lambda: list(idp.DEFAULT_SCOPES), max_length=20,
        description="requested scopes; must include openid (default: openid, email, profile; add the provider's "
        "groups scope when it has one)")
    groupsClaim: str = Field(default=idp.DEFAULT_GROUPS_CLAIM, min_length=1, max_length=100,
                             description="the claim (ID token or userinfo) listing the user's groups")
    groupRoles: list[GroupRoleRequest] = Field(default_factory=list, max_length=idp.MAX_GROUP_ROLES,
                                               description="roles given to members of each group, replaced at each "
                                               "sign-in")
    createUsers: bool = Field(default=False, description="whether a first sign-in creates the user")
    disabled: bool = Field(default=False, description="no sign-in through the provider, and the console sessions "
                           "it started end at once (its links and mappings are kept)")

    def spec(self) -> idp.ProviderSpec:
        return idp.ProviderSpec(
            issuer=self.issuer, client_id=self.clientId, client_secret=self.clientSecret, scopes=list(self.scopes),
            groups_claim=self.groupsClaim, create_users=self.createUsers, disabled=self.disabled,
            group_roles=[idp.GroupRole(m.group, m.role, m.project or "", m.environment or "")
                         for m in self.groupRoles])


class GroupRole(schemas.Out):
    group: str
    role: str
    project: str | None = None
    environment: str | None = None


class Link(schemas.Out):
    """An account of the provider (its subject, the ID token's ``sub``) that signs in as a user."""

    user: str
    subject: str
    createdAt: schemas.Timestamp
    lastSignInAt: schemas.Timestamp | None = None


class LinkRequest(schemas.JsonBody):
    """Link the provider's account ``subject`` to the existing user ``user``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    user: str = Field(min_length=1, max_length=63, description="an existing user")
    subject: str = Field(min_length=1, max_length=255, description="the account's subject at the provider (the "
                         "ID token's sub claim)")


class IdentityProvider(schemas.Out):
    """A provider as stored; the client secret never appears, only whether one is set."""

    name: str
    organization: str
    issuer: str
    clientId: str
    clientSecretSet: bool
    scopes: list[str]
    groupsClaim: str
    groupRoles: list[GroupRole]
    createUsers: bool
    disabled: bool
    redirectPath: str = Field(description="the path of the redirect URI to register at the provider, below the "
                              "console's URL")
    links: list[Link] | None = Field(default=None, description="the provider's accounts linked to users (one "
                                     "provider's answer only, not the list's)")
    createdAt: schemas.Timestamp
    updatedAt: schemas.Timestamp


class IdentityProviderList(schemas.Out):
    items: list[IdentityProvider]


REDIRECT_PATH = "/console/sso/callback"


def _view(row: Any) -> dict[str, Any]:
    return {**idp.view(row), "redirectPath": REDIRECT_PATH}


ORG = found(ORGANIZATION)
SUBJECT = Subject("IdentityProvider", "name", project="")


@router.read(BASE, requires("identityproviders:read"), ORG, session="read", response_model=IdentityProviderList,
             response_model_exclude_unset=True)
def list_identity_providers(c: Call[None], org: NamePath) -> dict[str, Any]:
    return {"items": [_view(r) for r in idp.list_rows(c.session, org)]}


@router.read(BASE + "/{name}", requires("identityproviders:read"), ORG, session="read",
             response_model=IdentityProvider, response_model_exclude_unset=True)
def get_identity_provider(c: Call[None], org: NamePath, name: NamePath) -> dict[str, Any]:
    row = idp.get(c.session, org, name)
    return {**_view(row), "links": idp.links(c.session, row)}


@router.mutation("PUT", BASE + "/{name}", requires("identityproviders:update"), ORG,
                 action="identityprovider.update", subject=SUBJECT,
                 body=documented(IdentityProviderRequest, "identity provider"),
                 response_model=None, responses={
                     200: {"model": IdentityProvider, "description": "the provider as stored (replaced)"},
                     201: {"model": IdentityProvider, "description": "the provider as stored (created)"}})
def put_identity_provider(c: Call[IdentityProviderRequest], org: NamePath, name: NewNamePath) -> JSONResponse:
    spec = c.body.spec()
    idp.check(c.session, org, name, spec)
    row, created = idp.put(c.session, c.platform.keyring, org, name, spec)
    secret = "; client secret set" if spec.client_secret else "; client secret removed" \
        if spec.client_secret == "" else ""
    c.work.message = (f"{'created' if created else 'replaced'}: issuer {spec.issuer}, "
                      f"{len(spec.group_roles)} group mapping(s){secret}" + ("; disabled" if spec.disabled else ""))
    return JSONResponse(_view(row), status_code=201 if created else 200)


@router.mutation("DELETE", BASE + "/{name}", requires("identityproviders:delete"), ORG,
                 action="identityprovider.delete", subject=SUBJECT, response_model=schemas.Deleted,
                 response_model_exclude_unset=True)
def delete_identity_provider(c: Call[None], org: NamePath, name: NamePath) -> dict[str, Any]:
    """The provider goes with the links of its accounts to users and the role bindings its groups gave; the users
    stay (with the bindings granted by hand)."""
    idp.delete_provider(c.session, idp.get(c.session, org, name))
    return {"deleted": name}


@router.mutation("POST", BASE + "/{name}/links", requires("identityproviders:update"), ORG,
                 action="identityprovider.link", subject=SUBJECT, body=documented(LinkRequest, "link"),
                 response_model=None, responses={
                     200: {"model": Link, "description": "the link was there already"},
                     201: {"model": Link, "description": "the link as stored"}})
def link_identity(c: Call[LinkRequest], org: NamePath, name: NamePath) -> JSONResponse:
    """An existing user signs in through the provider's account ``subject`` (for a provider that creates no
    users). An organization admin may link users whose roles are all in the organization; a platform
    administrator anyone."""
    row = idp.get(c.session, org, name)
    created = idp.link(c.session, row, c.body.user, c.body.subject, c.who.superuser)
    c.work.message = f"account '{c.body.subject}' linked to user '{c.body.user}'" + ("" if created else
                                                                                     " (already)")
    found = next(x for x in idp.links(c.session, row) if x["user"] == c.body.user)
    return JSONResponse(found, status_code=201 if created else 200)


@router.mutation("DELETE", BASE + "/{name}/links/{user}", requires("identityproviders:update"), ORG,
                 action="identityprovider.unlink", subject=SUBJECT, response_model=schemas.Deleted,
                 response_model_exclude_unset=True)
def unlink_identity(c: Call[None], org: NamePath, name: NamePath, user: NamePath) -> dict[str, Any]:
    """The user no longer signs in through the provider: the link goes with the roles the provider's groups gave
    the user and the console sessions the provider started for it."""
    subject = idp.unlink(c.session, idp.get(c.session, org, name), user)
    c.work.message = f"account '{subject}' unlinked from user '{user}'"
    return {"deleted": user}
