"""Joining a Ray cluster, shared by every verb that needs one (explain, distributed train)."""

from __future__ import annotations

import os

import ray

__all__ = ["connect"]


def connect(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Join a Ray cluster: ``address`` if given, ``RAY_ADDRESS`` under ``ray job submit``,
    else a fresh local one. ``address="local"`` avoids joining a dead cluster that a
    stale ``ray_current_cluster`` file points to (docs/architecture.md, "Measured")."""
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
