"""chatprovider: OpenAI-compatible chat endpoints as Kubernetes resources, and a relay to them."""
