"""veFaaS event functions call `index.handler` (main.handler); timer triggers `index.drain` and `index.reconcile`."""

from main import drain, handler, reconcile

__all__ = ["drain", "handler", "reconcile"]
