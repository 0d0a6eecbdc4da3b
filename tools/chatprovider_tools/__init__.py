"""The workshop of chatprovider-operator: what the tests, the demo and the benchmarks need and
the product's image does not ship.

- :mod:`.controlplane`: a local etcd + kube-apiserver (envtest's part, for tests and the demo);
- :mod:`.devserver`: a small, fast OpenAI-compatible server with fault injection;
- :mod:`.demo`: ``chatprovider up``, registered as a command of the product's CLI when this
  package is installed (entry point group ``chatprovider.commands``);
- :mod:`.generators`: the generated CRD copies and API reference.
"""
