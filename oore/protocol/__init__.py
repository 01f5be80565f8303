"""Wire protocols, defined once and free of any transport: what is said, not how it travels.

Modules here do no I/O and import no server or client machinery (an import-linter contract
says so); the HTTP routes, the runner channel and the runner agent all read them.
"""
