"""opsync: one product-work model over the tools a product portfolio lives in.

The installed distribution has this one top-level package; its parts live at the
repository's top level and are installed beneath it:
- opsync.service: the core (model, store, mappings, sync engine, inbox, CLI);
- opsync.connectors: one plugin package per tool, found through entry points;
- opsync.api: the FastAPI layer over the core;
- opsync.mappings: the shipped YAML mappings and portfolio.
"""
