"""The viewer's own static modules, inlined for a notebook output (no server, no CDN).

:func:`bundle_js` joins ``serve/static/js/*.js`` (ES modules) into one classic script: each module
becomes a function scope whose exports are the only names it hands on, so the notebook widget runs
the viewer's code unchanged and leaves no globals behind. :func:`scoped_css` is
``serve/static/style.css`` with every rule under one class, so the widget's styles touch nothing
else on the page.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "serve" / "static"
SCOPE = "ls-w"

_IMPORT = re.compile(r'^import\s*\{([^}]*)\}\s*from\s*"\./([\w.-]+\.js)";\s*$', re.M)
_EXPORT = re.compile(r"^export\s+(?:async\s+)?(?:function\*?|const|let|class)\s+([A-Za-z_$][\w$]*)", re.M)


def _order(entry: str, js: Path) -> list[str]:
    """Modules reachable from ``entry``, each after the ones it imports."""
    done: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in path:
            raise RuntimeError(f"import cycle in the viewer's modules: {' -> '.join((*path, name))}")
        for _, dep in _IMPORT.findall((js / name).read_text(encoding="utf-8")):
            visit(dep, (*path, name))
        done.append(name)

    visit(entry, ())
    return done


@lru_cache(maxsize=4)
def bundle_js(entry: str = "widget.js") -> str:
    """One script defining ``__ls`` (module name -> exports) for ``entry`` and its imports.

    The text is meant to sit inside a function (the widget's IIFE): ``__ls`` is local there.
    """
    js = STATIC / "js"
    out = ["const __ls = {};"]
    for name in _order(entry, js):
        src = (js / name).read_text(encoding="utf-8")
        imports = []
        for names, dep in _IMPORT.findall(src):
            binds = ", ".join(n.strip().replace(" as ", ": ") for n in names.split(",") if n.strip())
            imports.append(f"const {{ {binds} }} = __ls[{dep!r}];")
        body = _IMPORT.sub("", src)
        exports = _EXPORT.findall(body)
        body = re.sub(r"^export\s+", "", body, flags=re.M)
        out.append(
            f"__ls[{name!r}] = (() => {{\n{chr(10).join(imports)}\n{body}\nreturn {{ {', '.join(exports)} }};\n}})();"
        )
    return "\n".join(out)


def _scope_selectors(selectors: str) -> str:
    scoped = []
    for sel in selectors.split(","):
        sel = sel.strip()
        if sel in (":root", "html", "body", "html, body"):
            scoped.append(f".{SCOPE}")
        elif sel == "*":
            scoped.append(f".{SCOPE} *")
        else:
            scoped.append(f".{SCOPE} {sel}")
    return ", ".join(dict.fromkeys(scoped))


def _scope(css: str) -> str:
    out, i = [], 0
    while i < len(css):
        j = css.find("{", i)
        if j < 0:
            break
        head = css[i:j].strip()
        depth, k = 1, j + 1
        while depth:
            depth += {"{": 1, "}": -1}.get(css[k], 0)
            k += 1
        body = css[j + 1 : k - 1]
        if head.startswith("@media"):
            out.append(f"{head} {{ {_scope(body)} }}")
        elif head.startswith("@"):
            out.append(f"{head} {{{body}}}")
        else:
            out.append(f"{_scope_selectors(head)} {{{body}}}")
        i = k
    return "\n".join(out)


@lru_cache(maxsize=1)
def scoped_css() -> str:
    """The viewer's stylesheet with every selector under ``.ls-w`` (the widget's root)."""
    css = re.sub(r"/\*.*?\*/", "", (STATIC / "style.css").read_text(encoding="utf-8"), flags=re.S)
    return _scope(css)
