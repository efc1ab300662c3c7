"""fedlearn: federated LTV scoring with vertically partitioned logistic regression.

``fedlearn.Client`` is the Python API to A's node (docs/api.md); it is imported on first use, so
``import fedlearn`` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from fedlearn.client import Client

        return Client
    raise AttributeError(f"module 'fedlearn' has no attribute {name!r}")
