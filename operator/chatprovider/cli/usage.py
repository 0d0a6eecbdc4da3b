"""``chatprovider usage``: the ChatQuotas' consumption against their limits, from their status.

It reads ChatQuotas through the kubeconfig (as kubectl does) and prints what the operator last
wrote in ``status.usage`` (docs/quotas.md): a table, or JSON with ``-o json``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click
from pydantic import ValidationError

from chatprovider.api.quota import QUOTA_PLURAL, ChatQuota
from chatprovider.api.v1alpha1 import GROUP, VERSION
from chatprovider.domain.quota.view import quota_notes, table, usage_rows
from chatprovider.kube import KubeClient, KubeConfig
from chatprovider.kube.client import ApiError

__all__ = ["usage"]


async def _quotas(config: KubeConfig, namespace: str | None, name: str | None
                  ) -> list[ChatQuota]:
    base = f"/apis/{GROUP}/{VERSION}"
    path = f"{base}/{QUOTA_PLURAL}" if namespace is None else \
        f"{base}/namespaces/{namespace}/{QUOTA_PLURAL}"
    async with KubeClient(config) as client:
        if name is not None:
            items = [await client.get(f"{path}/{name}")]
        else:
            items = (await client.get(path)).get("items") or []
    quotas = []
    for item in items:
        try:
            quotas.append(ChatQuota.model_validate(item))
        except ValidationError:
            meta = item.get("metadata") or {}
            click.echo(f"skipping {meta.get('namespace')}/{meta.get('name')}: it does not "
                       "validate against this version's ChatQuota", err=True)
    return quotas


@click.command(short_help="Show the ChatQuotas' consumption against their limits.")
@click.argument("quota", required=False)
@click.option("-n", "--namespace", metavar="NAMESPACE",
              help="The quotas of this namespace (default: the kubeconfig context's).")
@click.option("-A", "--all-namespaces", is_flag=True, help="The quotas of every namespace.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="A table, or JSON (one object per row).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), envvar="KUBECONFIG",
              help="Path of the kubeconfig (default: $KUBECONFIG, then ~/.kube/config).")
@click.option("--context", metavar="NAME", help="The kubeconfig context to use.")
def usage(quota: str | None, namespace: str | None, all_namespaces: bool, output: str,
          kubeconfig: str | None, context: str | None) -> None:
    """Print each ChatQuota's consumption against its limits, per subject, as the operator last
    read it from the counter store (status.usage, at most the 20 subjects closest to a limit).
    A quota that is not Ready, or whose usage is not reported, is named on stderr with the
    reason.

    \b
    Examples:
      chatprovider usage -n llm
      chatprovider usage -A
      chatprovider usage -n llm team-a -o json
    """
    if all_namespaces and (namespace or quota):
        raise click.UsageError("-A lists every namespace: give neither -n nor a QUOTA with it")
    config = KubeConfig.load(kubeconfig, context)
    scope = None if all_namespaces else (namespace or config.namespace or "default")
    try:
        quotas = asyncio.run(_quotas(config, scope, quota))
    except ApiError as exc:
        raise click.ClickException(f"could not read ChatQuotas: {exc}") from None
    rows = usage_rows(quotas)
    if output == "json":
        out: list[dict[str, Any]] = [r.as_json() for r in rows]
        click.echo(json.dumps(out, indent=2))
    elif not quotas:
        where = "any namespace" if scope is None else f"namespace {scope}"
        click.echo(f"No ChatQuotas found in {where}.", err=True)
    else:
        click.echo(table(rows, namespaces=scope is None), nl=False)
    for note in quota_notes(quotas):
        click.echo(note, err=True)
