"""Pure domain logic: no kopf, Kubernetes client or HTTP client imports (enforced by import-linter).

Modules: ``endpoint`` (URL normalization), ``conditions`` (status conditions), ``egress`` (the
outbound address policy), ``probe`` (classifying a probe into conditions), ``routing`` (choosing a
provider for a model).
"""

from chatprovider.domain.endpoint import InvalidEndpoint, ResolvedEndpoint, resolve_endpoint

__all__ = ["InvalidEndpoint", "ResolvedEndpoint", "resolve_endpoint"]
