"""Use cases: what the HTTP layer and the CLI ask for, built from domain rules and the store."""
