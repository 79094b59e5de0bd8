"""labctl: a real three-host Docker Swarm lab, and why its overlay fails."""

__version__ = "0.1.0"
