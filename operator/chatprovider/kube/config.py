"""Where the API server is and how to authenticate to it."""

from __future__ import annotations

import os
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["KubeConfig"]

_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass
class KubeConfig:
    """Connection settings. Build with :meth:`load` (in-cluster first, then kubeconfig)."""

    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    token_file: str | None = None
    verify_ssl: bool = True
    _token_read_at: float = field(default=0.0, repr=False)

    @classmethod
    def load(cls, kubeconfig: str | None = None, context: str | None = None) -> KubeConfig:
        """In-cluster service account when running in a pod, else the kubeconfig file."""
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and _SA_DIR.exists():
            host = os.environ["KUBERNETES_SERVICE_HOST"]
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            host = f"[{host}]" if ":" in host else host
            return cls(server=f"https://{host}:{port}", ca_file=str(_SA_DIR / "ca.crt"),
                       token_file=str(_SA_DIR / "token"))
        from kubernetes import client, config  # only for parsing kubeconfig / exec plugins

        cfg = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=cfg
        )
        auth = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
        token = auth.split(" ", 1)[1] if auth and " " in auth else auth
        return cls(server=cfg.host.rstrip("/"), ca_file=cfg.ssl_ca_cert, cert_file=cfg.cert_file,
                   key_file=cfg.key_file, token=token, verify_ssl=bool(cfg.verify_ssl))

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify_ssl:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def bearer_token(self) -> str | None:
        """The current token; a projected token file is re-read every minute (it rotates)."""
        if self.token_file and time.monotonic() - self._token_read_at > 60:
            self.token = Path(self.token_file).read_text().strip()
            self._token_read_at = time.monotonic()
        return self.token
