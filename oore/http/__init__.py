"""Transport: the Quart-Trio app, its routes, auth extraction, errors, CORS and metrics."""
