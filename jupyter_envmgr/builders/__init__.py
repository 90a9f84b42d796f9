"""Executors of build plans: local subprocesses (the default) or Kubernetes Jobs."""
