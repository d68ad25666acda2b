"""Mixpanel: daily event totals and uniques through the Query API, pulled only."""
