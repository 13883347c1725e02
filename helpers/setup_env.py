"""What the Setup cell of every notebook calls once the repository is importable.

Minimum versions are checked, never pinned: Colab ships its own torch/torchvision and must keep them.
On Colab, :func:`setup` installs only what the runtime lacks, and never torch or torchvision.
"""
from __future__ import annotations

import importlib
import importlib.util
import platform
import subprocess
import sys

#: The oldest versions every notebook and unit test has been run with, end to end: the older pair is
#: the kind Colab runtimes ship (torch 2.9.1 / torchvision 0.24.1 on Python 3.12, rehearsed by
#: `make colab-check` from tests/colab/requirements-colab.txt). Older ones may work but were not run.
MIN_VERSIONS = {
    "torch": "2.9",
    "torchvision": "0.24",
    "numpy": "2.0",
    "PIL": "11.3",
    "matplotlib": "3.10",
    "tqdm": "4.67",
    "psutil": "5.9",
    "webdataset": "1.0",
    "skimage": "0.25",
}
#: Import name -> the name pip installs it by (only for what Colab might lack).
PIP_NAMES = {"PIL": "pillow", "skimage": "scikit-image"}
#: Colab's runtime ships these, built for its CUDA: installing them would replace them, so never.
NEVER_INSTALL = ("torch", "torchvision")


def _as_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def in_colab() -> bool:
    return "google.colab" in sys.modules


def check_versions(minimums: dict[str, str] = MIN_VERSIONS) -> dict[str, str]:
    """Import each package, assert it meets its minimum version, and return the versions found."""
    found = {}
    for module, minimum in minimums.items():
        mod = importlib.import_module(module)
        version = getattr(mod, "__version__", "0")
        if _as_tuple(version) < _as_tuple(minimum):
            if module in NEVER_INSTALL:
                fix = ("on Colab pick a newer runtime (Runtime > Change runtime type > Runtime version); "
                       "elsewhere `make setup` installs the pinned versions")
            else:
                fix = f"pip install -U {PIP_NAMES.get(module, module)}"
            raise RuntimeError(f"{module} {version} is older than {minimum}, the oldest these notebooks "
                               f"were tested with: {fix}")
        found[module] = version
    return found


def pick_device() -> str:
    """``cuda`` if a CUDA GPU is visible, then Apple's ``mps``, else ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def describe_device(device: str | None = None) -> str:
    """One line naming the device, e.g. ``cuda (NVIDIA H100 80GB HBM3)`` or ``cpu (2 threads)``."""
    import torch

    device = device or pick_device()
    if device == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    if device == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({torch.get_num_threads()} threads)"


def environment_report() -> str:
    """The lines the Setup cell prints: Python, package versions, device."""
    versions = check_versions()
    lines = [f"python      {platform.python_version()}"]
    lines += [f"{name:<11} {v}" for name, v in versions.items()]
    device = pick_device()
    lines.append(f"device      {describe_device(device)}")
    if in_colab() and device == "cpu":
        lines.append("note        no GPU in this Colab runtime: Runtime > Change runtime type > GPU "
                     "(on a CPU the notebooks run their quick configuration)")
    return "\n".join(lines)


def install_missing(minimums: dict[str, str] = MIN_VERSIONS) -> list[str]:
    """pip-install the packages that cannot be imported at all (never torch or torchvision); returns them."""
    missing = [PIP_NAMES.get(m, m) for m in minimums
               if m not in NEVER_INSTALL and importlib.util.find_spec(m) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
        importlib.invalidate_caches()
    return missing


def setup() -> str:
    """What the Setup cell calls: on Colab install what is missing, then check versions and name the device."""
    installed = install_missing() if in_colab() else []
    report = environment_report()
    return report + (f"\ninstalled   {', '.join(installed)}" if installed else "")
