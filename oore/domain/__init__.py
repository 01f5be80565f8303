"""Pure domain code: models, rules and decisions. No I/O, no trio, quart or asyncpg."""
