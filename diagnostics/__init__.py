"""Scapy probes and captures run on the lab's hosts, and the rules that turn
their evidence into findings."""
