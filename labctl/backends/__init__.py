"""Backends bring a lab's hosts up and down; they share one interface."""

from .base import Backend

__all__ = ["Backend"]
