"""Resolving the Secrets and ConfigMaps a provider references into a key and a CA bundle."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from chatprovider.domain.api_key import api_key_from
from chatprovider.domain.conditions import Reason
from chatprovider.kube.objects import (
    SECRET_OPT_IN_LABEL,
    SECRET_OPT_IN_VALUE,
    ReferencedObjects,
)
from chatprovider.registry import ObjectRef, ProviderView

__all__ = ["Resolved", "resolve_references"]


@dataclass(frozen=True)
class Resolved:
    """Outcome of resolving references. ``api_key`` is secret: never log or repr it."""

    reason: Reason
    message: str
    api_key: str | None = field(default=None, repr=False)
    ca_pem: bytes | None = field(default=None, repr=False)
    credential_version: str | None = None


def _missing(kind: str, name: str, ns: str, objects: ReferencedObjects, what: str = "") -> str:
    """'not found' worded the same whether the object is missing or (in opt-in mode) not
    labelled, so that the message tells nothing the provider's author could not read."""
    where = f"{kind} {name!r}{what} not found in namespace {ns!r}"
    if kind == "Secret" and objects.require_secret_label:
        where += f" (or not labelled {SECRET_OPT_IN_LABEL}={SECRET_OPT_IN_VALUE})"
    return where


async def resolve_references(view: ProviderView, objects: ReferencedObjects) -> Resolved:
    spec, ns = view.spec, view.ref.namespace
    ca_pem: bytes | None = None
    bundle = spec.tls.ca_bundle
    if bundle is not None:
        sel = bundle.secret_key_ref or bundle.config_map_key_ref
        assert sel is not None  # the CRD requires exactly one
        kind = "Secret" if bundle.secret_key_ref is not None else "ConfigMap"
        snap = await objects.get(ObjectRef(kind, ns, sel.name))
        where = f"{kind} {sel.name!r}"
        if not snap.exists:
            if snap.error == "forbidden":
                return Resolved(Reason.SECRET_FORBIDDEN, f"the operator may not read {where}")
            return Resolved(Reason.CA_BUNDLE_NOT_FOUND,
                            _missing(kind, sel.name, ns, objects, " (CA bundle)"))
        if sel.key not in snap.data:
            return Resolved(Reason.CA_BUNDLE_KEY_MISSING, f"{where} has no key {sel.key!r}")
        ca_pem = snap.data[sel.key]
        try:
            ssl.create_default_context(cadata=ca_pem.decode("ascii"))
        except (ssl.SSLError, ValueError, UnicodeDecodeError):
            return Resolved(Reason.CA_BUNDLE_INVALID,
                            f"{where} key {sel.key!r} holds no valid PEM certificate")
    ref = spec.api_key_secret_ref
    if ref is None:
        return Resolved(Reason.NO_SECRET_REQUIRED, "no API key configured", ca_pem=ca_pem)
    snap = await objects.get(ObjectRef("Secret", ns, ref.name))
    if not snap.exists:
        if snap.error == "forbidden":
            return Resolved(Reason.SECRET_FORBIDDEN, f"the operator may not read Secret "
                            f"{ref.name!r} (check its RBAC)", ca_pem=ca_pem)
        return Resolved(Reason.SECRET_NOT_FOUND, _missing("Secret", ref.name, ns, objects),
                        ca_pem=ca_pem)
    if ref.key not in snap.data:
        return Resolved(Reason.SECRET_KEY_MISSING,
                        f"Secret {ref.name!r} has no key {ref.key!r}", ca_pem=ca_pem)
    key = api_key_from(snap.data[ref.key])
    if key is None:
        return Resolved(Reason.SECRET_KEY_EMPTY, f"Secret {ref.name!r} key {ref.key!r} is empty "
                        "or not printable text", ca_pem=ca_pem)
    return Resolved(Reason.SECRET_RESOLVED, f"API key read from Secret {ref.name!r}",
                    api_key=key, ca_pem=ca_pem,
                    credential_version=f"{ref.name}@{snap.resource_version}")
