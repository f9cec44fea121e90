"""veFaaS event functions call `index.handler` (main.handler); a timer trigger can call `index.drain`."""

from main import drain, handler

__all__ = ["drain", "handler"]
