"""OrchQueue v1 over HTTP: Falcon ASGI resources mapping requests to the orchestrator service."""
