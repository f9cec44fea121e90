"""veFaaS event functions call `index.handler`: the same handler as main.handler."""

from main import handler

__all__ = ["handler"]
