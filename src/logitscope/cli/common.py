"""Shared CLI plumbing: clean errors, loading with a spinner. Token display lives in ``render.text``."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from contextlib import contextmanager
from functools import wraps

import typer
from typer.core import TyperGroup

# Options shared by every command that loads a model (typer reads these as defaults).
MODEL = typer.Argument(..., help="Hub id, local directory, or 'demo'.")
DEVICE = typer.Option("auto", "--device", help="auto, cpu, cuda, mps, ...")
DTYPE = typer.Option("auto", "--dtype", help="auto, float32, bfloat16, float16.")
TRUST_REMOTE_CODE = typer.Option(False, "--trust-remote-code", help="Run the model's own code (off unless asked).")
DEVICE_MAP = typer.Option(
    None,
    "--device-map",
    help="'stream': blocks read one at a time from the safetensors shards (models larger than memory); "
    "or accelerate's auto, balanced, sequential.",
)
MAX_MEMORY = typer.Option(
    None,
    "--max-memory",
    help="Memory budget, e.g. 4GiB: a local model larger than it is streamed from disk "
    "(with --offload-folder or --device-map: accelerate's per-device limit).",
)
OFFLOAD_FOLDER = typer.Option(
    None, "--offload-folder", help="Where accelerate may offload weights to disk (with --max-memory / --device-map)."
)
TRUNCATE = typer.Option(
    False,
    "--truncate",
    help="Cut an over-long input to the model's context: keeps its first tokens, or with --target "
    "the prompt's last tokens (the target is never cut).",
)
TRUNCATE_FIRST = typer.Option(
    False, "--truncate", help="Cut an over-long input to the model's context, keeping its first tokens."
)  # commands without a teacher-forced --target

# Library messages name Python arguments; on the command line the same advice names flags.
CLI_WORDS: list[tuple[str, str]] = [
    (r"text input needs a tokenizer: pass tokenizer= to Scope, or give token ids",
     "this model has no tokenizer (no tokenizer files beside its config.json), so text cannot be encoded"),
    (r"pass track=\[\.\.\.\] tokens to lens\(\)", "add --track TOKEN"),
    (r"pass encoding_errors='replace'", "add --encoding-errors replace"),
    (r"pass truncate=True", "add --truncate"),
    (r"truncate=True", "--truncate"),
    (r"pass trust_remote_code=True", "add --trust-remote-code"),
    (r"trust_remote_code=True", "--trust-remote-code"),
    (r"dtype='float32' or 'bfloat16'", "--dtype float32 or --dtype bfloat16"),
    (r"or pass format=", "or give --format"),
    (r"; pass strict=False to apply it anyway", "; give a --tuned lens trained for this model (logitscope train-lens)"),
    (r"or use scope\.embed\(\)/scope\.nearest\(\)", "or use 'logitscope embed'"),
    (r"\bsublayers=True works with the logit lens only, not with a tuned lens",
     "--sublayers works with the logit lens only, not with --tuned"),
    (r"\bsublayers=True", "--sublayers"),
    (r"\btuned=", "--tuned"),
    (r"\btrack=", "--track"),
    (r"\btarget=", "--target"),
    (r"\bgenerate=", "--generate"),
    (r"\blayers=", "--layers"),
    (r"\btop_k\b", "--top-k"),
    (r"\bbatch_size\b", "--batch-size"),
    (r"\bseq_len\b", "--seq-len"),
    (r"\bmax_tokens\b", "--max-tokens"),
    (r"\bn_boot\b", "--n-boot"),
    (r"\bdevice_map\b", "--device-map"),
    (r"\bmax_seq_len\b", "--max-seq-len"),
    (r"\bskip_first\b", "--skip-first"),
    (r"\bdim_batch\b", "--dim-batch"),
    (r"\bsource_layers\b", "--source-layers"),
    (r"\btarget_layer\b", "--target-layer"),
    (r"give tuned= or jacobian=", "give --tuned or --jacobian"),
    (r"\bmax_memory\b", "--max-memory"),
    (r"\boffload_folder\b", "--offload-folder"),
]  # fmt: skip


def cli_words(message: str) -> str:
    """A library message with its Python argument names replaced by the matching CLI flags."""
    for pattern, repl in CLI_WORDS:
        message = re.sub(pattern, repl, message)
    return message


def fail(message: str, code: int = 2) -> None:
    """Print one line on stderr and exit (no traceback)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def clean_errors(fn: Callable) -> Callable:
    """Turn LogitscopeError (and file-system errors, e.g. a full disk) into one ``error:`` line and exit 2.

    The message speaks CLI (:func:`cli_words`). Anything else is a bug and keeps its traceback.
    """

    @wraps(fn)
    def wrapper(*args, **kwargs):
        from ..errors import LogitscopeError

        try:
            return fn(*args, **kwargs)
        except LogitscopeError as err:
            fail(cli_words(str(err).splitlines()[0] if str(err) else type(err).__name__))
        except OSError as err:  # a disk that fills up, a file that vanished, no permission
            where = f": {err.filename}" if err.filename else ""
            fail(f"{err.strerror or str(err) or type(err).__name__}{where}")

    return wrapper


@contextmanager
def status(message: str):
    """A rich spinner on stderr while something slow runs (silent when not a terminal)."""
    from rich.console import Console

    console = Console(stderr=True)
    if console.is_terminal:
        with console.status(message):
            yield
    else:
        yield


def check_out_file(path, flag: str) -> None:
    """Fail (``error:``, exit 2) unless a file can be written at ``path``; call before any work."""
    if path is not None:
        from ..io.atomic import check_file_dest

        check_file_dest(path, flag)


def check_out_dir(path, flag: str) -> None:
    """Fail unless a directory can be written or created at ``path``; call before any work."""
    from ..io.atomic import check_dir_dest

    check_dir_dest(path, flag)


def check_lens_paths(**flags: str | None) -> None:
    """Fail (``error:``, exit 2) for a lens flag naming nothing on disk; call before loading the model.

    ``flags``: flag name (``lens``, ``tuned``, ``jacobian``) -> its value; ``demo`` and ``logit``
    name built-in lenses.
    """
    from pathlib import Path

    for name, value in flags.items():
        if value is not None and value not in ("demo", "logit") and not Path(value).expanduser().exists():
            fail(f"--{name} {value!r}: no such file or folder (give a lens saved on disk, or 'demo')")


def memory(device_map=None, max_memory=None, offload_folder=None) -> dict:
    """``load()``'s memory keywords from the --device-map/--max-memory/--offload-folder flags."""
    return {"device_map": device_map, "max_memory": max_memory, "offload_folder": offload_folder}


def load_scope(model: str, *, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False, **mem):
    """Load a model for a command, with a spinner (``mem``: :func:`memory`'s keywords)."""
    from ..loading import load

    with status(f"loading {model}"):
        return load(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code, **mem)


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


class OneLineErrors(TyperGroup):
    """The CLI's group: a usage error (unknown option, a value of the wrong type) is one ``error:``
    line and exit code 2, like every other bad input, instead of click's boxed usage block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode: bool = True, **extra):
        for command in [self, *self.commands.values()]:
            _no_flag_metavar(command)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except Exception as err:  # click's classes, matched by name: typer may vendor its own click
            kinds = {c.__name__ for c in type(err).__mro__}
            if "Abort" in kinds:
                typer.echo("Aborted!", err=True)
                sys.exit(1)
            if "ClickException" not in kinds:
                raise
            if "NoArgsIsHelpError" not in kinds:  # that one has printed the help already
                ctx = getattr(err, "ctx", None)
                hint = f" (see '{ctx.command_path} --help')" if "UsageError" in kinds and ctx is not None else ""
                typer.echo(f"error: {err.format_message()}{hint}", err=True)
            sys.exit(err.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


def _no_flag_metavar(command) -> None:
    """On/off flags (``--truncate``, ``--help``) take no value: show no ``<bool>`` beside them in help."""
    for param in command.params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    if getattr(command, "_flag_help_patched", False):
        return
    make = command.get_help_option

    def get_help_option(ctx):
        option = make(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option
    command._flag_help_patched = True
