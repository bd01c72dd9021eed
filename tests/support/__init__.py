"""Test support: an isolated environment, process control, bounded waiting."""
