"""Confluence Cloud connector: pages of chosen spaces through REST v2, webhooks from a Connect
app (JWT) or from Confluence Data Center (X-Hub-Signature)."""
