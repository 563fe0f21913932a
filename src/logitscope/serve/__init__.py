"""``logitscope serve``: the interactive logit lens in a browser, served by a local FastAPI app.

:func:`create_app` builds the app around scopes already in memory (tests pass tiny ones); the CLI
(``cli/serve.py``) loads models by name once at start and runs it under uvicorn. Modules:

- ``limits.py``: what a request may ask for (sizes, top-k, queue depth);
- ``schemas.py``: pydantic request models (the OpenAPI page at ``/docs`` documents them);
- ``models.py``: the models the server holds, by name, each behind its own bounded queue;
- ``slots.py``: one computation at a time per model, in a worker thread, 503 when the queue is full;
- ``reduce.py``: scope → small JSON payloads (top-k and statistics, never a vocabulary row);
- ``column.py``: every layer's distribution at one position (panel rank changes, compare KL);
- ``guard.py``: Host/Origin checks (DNS rebinding) and the body-size limit, as ASGI middleware;
- ``app.py``: the routes and error handlers; ``static/``: the page (vanilla ES modules, no build).
"""

from __future__ import annotations

__all__ = ["create_app", "Limits"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "Limits":
        from .limits import Limits

        return Limits
    raise AttributeError(name)
