"""PostHog: daily event totals and unique users through the query API (TrendsQuery), pulled only."""
