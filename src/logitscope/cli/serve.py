"""``logitscope serve``: the interactive logit lens in a local browser page (FastAPI + uvicorn)."""

from __future__ import annotations

import os
import socket
import sys

import typer

from .common import (
    DEVICE,
    DEVICE_MAP,
    DTYPE,
    MAX_MEMORY,
    OFFLOAD_FOLDER,
    TRUST_REMOTE_CODE,
    clean_errors,
    fail,
    memory,
    status,
)


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the CLI."""
    app.command("serve")(serve)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), or a one-line error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {err.strerror or err}; pick another --port or --host")
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@clean_errors
def serve(
    models: list[str] | None = typer.Argument(
        None, help="Models to serve (hub ids, local directories or 'demo'; default: demo). The page picks by name."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 exposes it to the network)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port (0: any free port)."),
    allow_host: list[str] | None = typer.Option(
        None, "--allow-host", help="Extra Host header names to accept (DNS-rebinding protection refuses others)."
    ),
    max_tokens: int = typer.Option(256, "--max-tokens", min=1, help="Longest input accepted, in tokens."),
    max_queue: int = typer.Option(8, "--max-queue", min=0, help="Requests waiting per model before 503."),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in a browser once the server is up."),
    tuned: list[str] | None = typer.Option(
        None, "--tuned", help="NAME=DIR: attach a tuned-lens folder to served model NAME (repeatable; demo has one)."
    ),
    jacobian: list[str] | None = typer.Option(
        None,
        "--jacobian",
        help="NAME=FILE: attach a Jacobian-lens file to served model NAME (repeatable; demo has one).",
    ),
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    device_map: str | None = DEVICE_MAP,
    max_memory: str | None = MAX_MEMORY,
    offload_folder: str | None = OFFLOAD_FOLDER,
) -> None:
    """Serve an interactive logit lens of MODELS at http://HOST:PORT/ (Ctrl-C stops it)."""
    from ..serve.guard import ALL_INTERFACES
    from ..serve.limits import Limits

    if host in ALL_INTERFACES:
        typer.secho(
            f"warning: --host {host} serves every network interface: anyone who can reach this machine can run "
            "the models. Host headers that are IP addresses are accepted; other names need --allow-host.",
            fg="yellow",
            err=True,
        )
    from ..errors import InputError

    folders = {}
    for item in tuned or []:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise InputError(f"--tuned {item!r}: expected NAME=DIR (a served model's name and a tuned-lens folder)")
        folders[name] = folder
    files = {}
    for item in jacobian or []:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise InputError(f"--jacobian {item!r}: expected NAME=FILE (a served model's name and a J-lens file)")
        files[name] = file
    sock = bind(host, port)
    from ..serve.models import load_scopes

    with status(f"loading {', '.join(models or ['demo'])}"):
        mem = memory(device_map, max_memory, offload_folder)
        scopes = load_scopes(list(models or []), device=device, dtype=dtype, trust_remote_code=trust_remote_code, **mem)
    import uvicorn

    from ..serve.app import create_app

    app = create_app(
        scopes,
        host=host,
        allowed_hosts=allow_host or (),
        limits=Limits(max_tokens=max_tokens, max_queue=max_queue),
        tuned=folders,
        jacobian=files,
    )
    shown = "127.0.0.1" if host in ALL_INTERFACES else (f"[{host}]" if ":" in host else host)
    url = f"http://{shown}:{sock.getsockname()[1]}/"
    typer.echo(f"logitscope serve: {url}  (models: {', '.join(scopes)}; Ctrl-C to stop)", err=True)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:  # Ctrl-C: in-flight requests answer 503 at once
            app.state.stop.set()
            super().handle_exit(sig, frame)

    server = Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    if open_browser:
        _open_when_up(server, url)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled; the shutdown already happened
        pass
    typer.echo("logitscope serve: stopped", err=True)
    _exit_now_if_computing()


def _exit_now_if_computing() -> None:
    """A computation answered 503 may still run in a worker thread (torch cannot be interrupted);
    exit without waiting for it (nothing it would write is kept)."""
    import threading

    if any(t is not threading.main_thread() and t.is_alive() and not t.daemon for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _open_when_up(server, url: str) -> None:
    import threading
    import time
    import webbrowser

    def wait_then_open() -> None:
        for _ in range(600):
            if server.started:
                webbrowser.open(url)
                return
            time.sleep(0.05)

    threading.Thread(target=wait_then_open, daemon=True).start()
