"""chatprovider: register OpenAI-compatible chat endpoints as Kubernetes resources and relay to them."""
