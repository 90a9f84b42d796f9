"""The Kubernetes API stand-in (server.py) and a small client of its control routes (for tests)."""
