"""What the analytics connectors (Amplitude, Mixpanel, PostHog) share: their settings, the
window of days a pull covers, the HTTP seam, and a pull that turns daily numbers into records."""
