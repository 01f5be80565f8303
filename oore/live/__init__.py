"""What people follow live: the event hub and the build log streams.

These parts sit above the actor kernel (``oore/actors``) and below the services: they are
actors with a domain (builds, runners, log lines), built on the kernel's pieces, and the
services reach them through the handles and owners defined here, never through the
kernel itself.
"""
