"""What the notebooks call to show things: a helper's real source code, and headline results.

``show_source`` is how this collection keeps one source of truth: a class is written once, in
``helpers/``, and the notebook that teaches it displays that very code (and then runs it), so the
text a reader sees cannot drift from the code that runs.
"""
from __future__ import annotations

import inspect
import os
import textwrap
from pathlib import Path

from .project import ROOT

#: ``make run`` collects the lines that start with this into its summary.
HEADLINE_PREFIX = "[headline] "
#: ``FACES_PROGRESS=0`` turns progress bars off (``make run``, ``make test`` and ``make refresh`` set it),
#: so executed notebooks keep one log line per epoch instead of hundreds of bar frames.
PROGRESS_ENV = "FACES_PROGRESS"


def progress_bars(default: bool = True) -> bool:
    """Whether to draw progress bars: ``default`` unless ``$FACES_PROGRESS`` says otherwise."""
    value = os.environ.get(PROGRESS_ENV)
    if value is None or not value.strip():
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def _part(lines: list[str], start: str | None, stop: str | None) -> tuple[int, int]:
    """Index range of ``lines`` from the first line whose stripped text starts with ``start`` up to,
    not including, the next line that starts with ``stop`` (the end when ``stop`` is None)."""
    stripped = [line.strip() for line in lines]
    begin = 0
    if start is not None:
        hits = [i for i, text in enumerate(stripped) if text.startswith(start)]
        if not hits:
            raise ValueError(f"no line starts with {start!r}")
        begin = hits[0]
    end = len(lines)
    if stop is not None:
        hits = [i for i, text in enumerate(stripped) if i > begin and text.startswith(stop)]
        if not hits:
            raise ValueError(f"no line after {start!r} starts with {stop!r}")
        end = hits[0]
    while end > begin + 1 and not stripped[end - 1]:  # no trailing blank lines
        end -= 1
    return begin, end


def source_of(obj, start: str | None = None, stop: str | None = None) -> tuple[str, str]:
    """The source text of a module, class, function or method, and where it lives (``path:first-last``).

    ``start``/``stop``: only the lines from the first one that starts with ``start`` (leading spaces
    ignored) up to the next one that starts with ``stop``, e.g. one branch of a long function. The text
    is dedented, so a method or a branch reads as code at the left margin.
    """
    obj = inspect.unwrap(obj)  # a decorated function (e.g. @torch.no_grad()) lives in our file, not torch's
    lines, first = inspect.getsourcelines(obj)
    first = max(first, 1)
    begin, end = _part(lines, start, stop) if (start or stop) else (0, len(lines))
    path = Path(inspect.getsourcefile(obj)).resolve()
    try:
        where = path.relative_to(ROOT).as_posix()
    except ValueError:
        where = path.name
    text = textwrap.dedent("".join(lines[begin:end])).rstrip() + "\n"
    return text, f"{where}:{first + begin}-{first + end - 1}"


def show_source(obj, note: str = "", start: str | None = None, stop: str | None = None) -> None:
    """Display the real code of ``obj`` (or the part between ``start`` and ``stop``, see
    :func:`source_of`) as a highlighted block with its file and line numbers."""
    from IPython.display import Markdown, display

    text, where = source_of(obj, start, stop)
    caption = f"*From `{where}`*" + (f" — {note}" if note else "")
    display(Markdown(f"{caption}\n\n```python\n{text}```"))


def headline(label: str, value, fmt: str = "") -> None:
    """Print one headline result; ``make run`` lists it in its summary."""
    shown = format(value, fmt) if fmt else str(value)
    print(f"{HEADLINE_PREFIX}{label}: {shown}")
