"""Where the API server is and how to authenticate to it: in-cluster, or from a kubeconfig."""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from chatprovider.kube.credentials import ExecPlugin, StaticToken, TokenFile, TokenSource
from chatprovider.kube.kubeconfig import (
    KubeConfigError,
    Resolved,
    default_paths,
    load_files,
    resolve,
)

__all__ = ["SERVICE_ACCOUNT_DIR", "KubeConfig"]

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass
class KubeConfig:
    """Connection settings. Build with :meth:`load` (in-cluster first, then kubeconfig)."""

    server: str
    ca_file: str | None = None
    ca_data: bytes | None = field(default=None, repr=False)
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = field(default=None, repr=False)
    key_data: bytes | None = field(default=None, repr=False)
    verify_ssl: bool = True
    tls_server_name: str | None = None
    namespace: str | None = None
    credentials: TokenSource = field(default_factory=lambda: StaticToken(None))

    @classmethod
    def load(cls, kubeconfig: str | None = None, context: str | None = None,
             *, service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> KubeConfig:
        """In-cluster service account when running in a pod (and no kubeconfig is given), else
        ``kubeconfig``, else ``$KUBECONFIG`` (its files merged), else ``~/.kube/config``."""
        if (kubeconfig is None and context is None
                and os.environ.get("KUBERNETES_SERVICE_HOST") and service_account_dir.exists()):
            return cls.in_cluster(service_account_dir)
        paths = [Path(kubeconfig).expanduser()] if kubeconfig else default_paths()
        return cls.from_resolved(resolve(load_files(paths, explicit=bool(kubeconfig)), context))

    @classmethod
    def in_cluster(cls, service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> KubeConfig:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise KubeConfigError("in-cluster: KUBERNETES_SERVICE_HOST is not set")
        host = f"[{host}]" if ":" in host else host
        namespace = service_account_dir / "namespace"
        return cls(server=f"https://{host}:{port}", ca_file=str(service_account_dir / "ca.crt"),
                   namespace=namespace.read_text().strip() if namespace.exists() else None,
                   credentials=TokenFile(str(service_account_dir / "token")))

    @classmethod
    def from_resolved(cls, r: Resolved) -> KubeConfig:
        credentials: TokenSource
        if r.token_file:  # client-go: tokenFile wins over token, and is re-read
            credentials = TokenFile(r.token_file)
        elif r.token:
            credentials = StaticToken(r.token)
        elif r.exec is not None:
            credentials = ExecPlugin(r.exec)
        else:
            credentials = StaticToken(None)
        return cls(server=r.server, ca_file=r.ca_file, ca_data=r.ca_data, cert_file=r.cert_file,
                   key_file=r.key_file, cert_data=r.cert_data, key_data=r.key_data,
                   verify_ssl=not r.insecure, tls_server_name=r.tls_server_name,
                   namespace=r.namespace, credentials=credentials)

    def ssl_context(self) -> ssl.SSLContext:
        cadata = self.ca_data.decode() if self.ca_data else None
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file, cadata=cadata)
        except (OSError, ssl.SSLError) as exc:
            raise KubeConfigError(f"certificate-authority {self.ca_file or '(data)'} cannot be "
                                  f"loaded: {exc}") from None
        if not self.verify_ssl:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file or self.cert_data:
            self._load_client_cert(ctx)
        return ctx

    def _load_client_cert(self, ctx: ssl.SSLContext) -> None:
        # ssl loads a certificate chain from files only: data goes to a private temporary
        # directory for the duration of the call.
        with tempfile.TemporaryDirectory(prefix="chatprovider-kube-") as tmp:
            cert, key = self.cert_file, self.key_file
            if self.cert_data:
                cert = str(Path(tmp) / "client.crt")
                Path(cert).write_bytes(self.cert_data)
            if self.key_data:
                key = str(Path(tmp) / "client.key")
                Path(key).touch(0o600)
                Path(key).write_bytes(self.key_data)
            try:
                ctx.load_cert_chain(str(cert), key)
            except (OSError, ssl.SSLError) as exc:
                raise KubeConfigError(
                    f"client-certificate {self.cert_file or '(data)'} / client-key "
                    f"{self.key_file or '(data)'} cannot be loaded: {exc.__class__.__name__}"
                ) from None

    async def bearer_token(self) -> str | None:
        """The token to send now (refreshed when due)."""
        return await self.credentials.token()
