"""What the notebooks call to show things: a helper's real source code, and headline results.

``show_source`` is how this collection keeps one source of truth: a class is written once, in
``helpers/``, and the notebook that teaches it displays that very code (and then runs it), so the
text a reader sees cannot drift from the code that runs.
"""
from __future__ import annotations

import inspect
import os
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


def source_of(obj) -> tuple[str, str]:
    """The source text of a module, class, function or method, and where it lives (``path:first-last``)."""
    obj = inspect.unwrap(obj)  # a decorated function (e.g. @torch.no_grad()) lives in our file, not torch's
    lines, first = inspect.getsourcelines(obj)
    path = Path(inspect.getsourcefile(obj)).resolve()
    try:
        where = path.relative_to(ROOT).as_posix()
    except ValueError:
        where = path.name
    first = max(first, 1)
    return "".join(lines).rstrip() + "\n", f"{where}:{first}-{first + len(lines) - 1}"


def show_source(obj, note: str = "") -> None:
    """Display the real code of ``obj`` as a highlighted block with its file and line numbers."""
    from IPython.display import Markdown, display

    text, where = source_of(obj)
    caption = f"*From `{where}`*" + (f" — {note}" if note else "")
    display(Markdown(f"{caption}\n\n```python\n{text}```"))


def headline(label: str, value, fmt: str = "") -> None:
    """Print one headline result; ``make run`` lists it in its summary."""
    shown = format(value, fmt) if fmt else str(value)
    print(f"{HEADLINE_PREFIX}{label}: {shown}")
