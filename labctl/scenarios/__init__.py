"""Scenarios: Docker's overlay-networking tutorials as commands run on the right
hosts, each followed by a check that can fail, with clean-up that always runs."""
