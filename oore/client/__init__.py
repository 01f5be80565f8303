"""The HTTP client behind ``oore``'s commands for people: the stored sign-in, API calls,
log streams and downloads. It talks to a server over HTTP only and imports nothing of the
server side."""
