"""Pure domain logic: no kopf, Kubernetes client or HTTP client imports (enforced by import-linter).

Modules: ``endpoint`` (URL normalization), ``conditions`` (status conditions), ``egress`` (the
outbound address policy), ``probe`` (classifying a probe into conditions), ``routing`` (choosing a
provider for a model).
"""
