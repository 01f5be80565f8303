"""``oore runner``: the agent that claims builds from an oore server and runs them here.

A client of the runner protocol only: it imports the pure domain, never the server side.
``client`` speaks HTTP, ``checkout`` clones, ``resolve`` picks the config, ``executor``
runs the steps, ``logs`` ships their output, ``job`` runs one build, ``agent`` the loop.
"""
