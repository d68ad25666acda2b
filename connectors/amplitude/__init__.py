"""Amplitude: daily event totals and uniques through the Dashboard REST API, pulled only."""
