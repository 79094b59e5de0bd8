"""Backends bring a lab's hosts up and down: one protocol (`base.Backend`) and one
registry, keyed by provider, with a probe per provider for auto-detection."""

from .base import Backend, Boot
from .registry import REGISTRY, Choice, Provider, choose, create

__all__ = ["REGISTRY", "Backend", "Boot", "Choice", "Provider", "choose", "create"]
