"""The FastAPI app of ``logitscope serve``: the page, its static files and the JSON API.

Routes (OpenAPI at ``/docs``): ``GET /api/models``; ``POST /api/lens``, ``/api/column``,
``/api/compare``, ``/api/logits``, ``/api/nearest``, ``/api/export``. Errors are JSON
``{"error": message}``: 400 bad input, 404 unknown model, 413 over a limit, 422 malformed
request, 503 + ``Retry-After`` when a model's queue is full. Never a traceback.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ContextLengthError, LogitscopeError
from . import reduce
from .guard import Guard, HostPolicy
from .limits import Limits
from .models import Entry, UnknownModelError, build_entries
from .schemas import ColumnRequest, CompareRequest, ExportRequest, LensRequest, LogitsRequest, NearestRequest
from .slots import Busy, Gone, Stop, Stopping, run_exclusive, unless_stopped
from .words import field_label, viewer_words

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("logitscope.serve")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
    ),
}


def plotly_js() -> Path:
    """plotly.min.js from the installed ``plotly`` wheel (the page's only library; no CDN)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@lru_cache(maxsize=1)
def _metrics() -> dict[str, Any]:
    """The metrics' labels and colour scales, sampled from the same matplotlib colormaps as the CLI's plots."""
    from ..render.metrics import MISSING, metric_specs

    return {"missing": MISSING, "metrics": metric_specs()}


def _status(err: LogitscopeError) -> int:
    if isinstance(err, UnknownModelError):
        return 404
    if isinstance(err, (reduce.LimitError, ContextLengthError)):  # docs/serve.md: over a limit or the context
        return 413
    return 400


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, allow_nan=False, separators=(",", ":")).encode()  # ASCII: even a lone surrogate is safe


def create_app(
    scopes: dict[str, Any],
    *,
    host: str = "127.0.0.1",
    allowed_hosts=(),
    limits: Limits | None = None,
    tuned: dict[str, Any] | None = None,
    jacobian: dict[str, Any] | None = None,
) -> FastAPI:
    """The viewer app around already-loaded models.

    Args:
        scopes: ``{name: Scope}``; the page picks models by these names.
        host: the address the server binds (accepted as a Host header, see ``guard.py``).
        allowed_hosts: further accepted Host names.
        limits: request limits (default :class:`~logitscope.serve.limits.Limits`).
        tuned: ``{name: tuned-lens folder}`` attached at start (the demo model gets its shipped one).
        jacobian: ``{name: J-lens file}`` attached at start (the demo model gets its shipped one).
    """
    limits = limits or Limits()
    entries = build_entries(scopes, limits.max_queue, tuned, jacobian)
    app = FastAPI(
        title="logitscope",
        summary="An exact logit lens of local models: top-k and statistics at every layer and position.",
        version=_version(),
        docs_url=None,  # served by _api_docs, without a CDN when swagger-ui-bundle is installed
        redoc_url=None,
    )
    app.state.entries = entries
    app.state.limits = limits
    app.state.stop = Stop()  # set on Ctrl-C (cli/serve.py): in-flight requests answer 503
    app.add_middleware(
        Guard, policy=HostPolicy(host, allowed_hosts), max_body=limits.max_body_bytes, headers=SECURITY_HEADERS
    )
    _errors(app)

    def entry(name: str) -> Entry:
        if name not in entries:
            raise UnknownModelError(f"unknown model {name!r}; this server holds: {', '.join(entries)}")
        return entries[name]

    def check_text(*texts: str | None) -> None:
        for text in texts:
            if text is not None and len(text) > limits.max_chars:
                raise reduce.LimitError(
                    f"a text box holds {len(text)} characters; this server accepts at most {limits.max_chars}"
                )

    def check_k(top_k: int, track=()) -> None:
        if top_k > limits.max_top_k:
            raise reduce.LimitError(f"top-k {top_k}: this server returns at most {limits.max_top_k} tokens per cell")
        if len(track) > limits.max_track:
            raise reduce.LimitError(f"{len(track)} pinned tokens; this server follows at most {limits.max_track}")

    async def compute(request: Request, used: list[Entry], fn) -> Response:
        data = await unless_stopped(
            app.state.stop, run_exclusive([e.slot for e in used], fn, disconnected=request.is_disconnected)
        )
        return Response(data, media_type="application/json")

    # -- the page ----------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    async def plotly() -> FileResponse:
        return FileResponse(plotly_js(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _api_docs(app)

    # -- the API -----------------------------------------------------------------------------
    @app.get("/api/models")
    async def models() -> dict[str, Any]:
        """The served models (by name), the server's limits and the metrics' colour scales."""
        return {"models": [e.summary for e in entries.values()], "limits": limits.__dict__, **_metrics()}

    @app.post("/api/lens")
    async def lens(req: LensRequest, request: Request) -> Response:
        """The logit lens: ``LensResult.to_dict()`` (top-k and statistics per cell) plus the layer stride."""
        e = entry(req.model)
        check_text(req.text, req.target)
        check_k(req.top_k, req.track)
        return await compute(request, [e], lambda: _json_bytes(reduce.lens_payload(e, req, limits)))

    @app.post("/api/column")
    async def column(req: ColumnRequest, request: Request) -> Response:
        """Probability and rank of chosen tokens at every layer of one position."""
        e = entry(req.model)
        check_text(req.text, req.target)
        if len(req.ids) + len(req.tokens) > limits.max_ids:
            raise reduce.LimitError(f"{len(req.ids) + len(req.tokens)} tokens; at most {limits.max_ids}")
        return await compute(request, [e], lambda: _json_bytes(reduce.column_payload(e, req, limits)))

    @app.post("/api/compare")
    async def compare(req: CompareRequest, request: Request) -> Response:
        """Per-layer KL between two prompts or two models (same vocabulary) at one position each."""
        a, b = entry(req.a.model), entry(req.b.model)
        check_text(req.a.text, req.a.target, req.b.text, req.b.target)
        return await compute(request, [a, b], lambda: _json_bytes(reduce.compare_payload(a, b, req, limits)))

    @app.post("/api/logits")
    async def logits(req: LogitsRequest, request: Request) -> Response:
        """The model's own top-k (masked LMs: at the mask positions), optionally greedy generation."""
        e = entry(req.model)
        check_text(req.text, req.target)
        check_k(req.top_k)
        return await compute(request, [e], lambda: _json_bytes(reduce.logits_payload(e, req, limits)))

    @app.post("/api/nearest")
    async def nearest(req: NearestRequest, request: Request) -> Response:
        """Nearest tokens in the input-embedding space to each token of a text."""
        e = entry(req.model)
        check_text(req.text)
        return await compute(request, [e], lambda: _json_bytes(reduce.nearest_payload(e, req, limits)))

    @app.post("/api/export")
    async def export(req: ExportRequest, request: Request) -> Response:
        """The current view as a JSON, CSV or self-contained interactive HTML file (as the CLI writes)."""
        e = entry(req.model)
        check_text(req.text, req.target)
        check_k(req.top_k, req.track)
        content, media, name = await unless_stopped(
            app.state.stop,
            run_exclusive([e.slot], lambda: reduce.export_bytes(e, req, limits), disconnected=request.is_disconnected),
        )
        return Response(content, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    return app


def _api_docs(app: FastAPI) -> None:
    """FastAPI's Swagger page at ``/docs``: its assets from the ``fastapi-offline`` wheel when
    installed (works offline), else from FastAPI's default CDN. Its inline start-up script needs a
    looser script policy than the viewer's pages."""
    from fastapi.openapi.docs import get_swagger_ui_html

    try:
        import fastapi_offline

        assets: Path | None = Path(fastapi_offline.__file__).parent / "static"
    except ImportError:
        assets = None
    kwargs, cdn = {}, " https://cdn.jsdelivr.net"
    if assets is not None and (assets / "swagger-ui-bundle.js").exists():
        app.mount("/vendor/swagger", StaticFiles(directory=assets), name="swagger")
        kwargs = {
            "swagger_js_url": "/vendor/swagger/swagger-ui-bundle.js",
            "swagger_css_url": "/vendor/swagger/swagger-ui.css",
        }
        cdn = ""
    policy = (
        f"default-src 'self'; script-src 'self' 'unsafe-inline'{cdn}; style-src 'self' 'unsafe-inline'{cdn}; "
        f"img-src 'self' data:{cdn}; connect-src 'self'; frame-ancestors 'none'"
    )

    @app.get("/docs", include_in_schema=False)
    async def docs():
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url, title="logitscope API", swagger_favicon_url="/static/favicon.svg", **kwargs
        )
        page.headers["Content-Security-Policy"] = policy
        return page


def _errors(app: FastAPI) -> None:
    """Every failure becomes ``{"error": message}`` with a 4xx (or the documented 503)."""

    @app.exception_handler(LogitscopeError)
    async def bad_input(request: Request, err: LogitscopeError) -> JSONResponse:
        message = viewer_words(str(err).splitlines()[0]) if str(err) else type(err).__name__
        return JSONResponse({"error": message, "type": type(err).__name__}, status_code=_status(err))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = err.errors()
        first = errors[0] if errors else {}
        where = field_label(first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
        detail = jsonable_encoder([{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors])
        return JSONResponse({"error": message, "detail": detail}, status_code=422)

    @app.exception_handler(Busy)
    async def busy(request: Request, err: Busy) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=503, headers={"Retry-After": str(err.retry_after)})

    @app.exception_handler(Stopping)
    async def stopping(request: Request, err: Stopping) -> JSONResponse:
        return JSONResponse({"error": "the server is shutting down"}, status_code=503, headers={"Connection": "close"})

    @app.exception_handler(Gone)
    async def gone(request: Request, err: Gone) -> JSONResponse:
        return JSONResponse({"error": "request superseded"}, status_code=409)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:  # a bug: say so, without a traceback
        log.exception("unexpected error in %s", request.url.path)
        return JSONResponse({"error": f"internal error ({type(err).__name__}); see the server log"}, status_code=500)


def _version() -> str:
    from .. import __version__

    return __version__
