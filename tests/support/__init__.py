"""Shared test harnesses: comparing a hub's view with a simulator's truth, waiting for runs."""
