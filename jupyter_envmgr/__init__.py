"""jupyter_envmgr: Python environments for notebooks, built on shared storage and registered as kernels."""
from ._version import __version__


def _jupyter_server_extension_points():
    from .app import EnvManagerApp

    return [{"module": "jupyter_envmgr", "app": EnvManagerApp}]


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "jupyter-envmgr"}]


def load_ipython_extension(ipython):
    """`%load_ext jupyter_envmgr`: the %envmgr magics; in an environment's kernel, also pin its revision."""
    import os

    from .magics import load_ipython_extension as load

    if os.environ.get("JUPYTER_ENVMGR_REVISION"):
        from .inuse import hold

        hold()
    load(ipython)


__all__ = ["__version__"]
