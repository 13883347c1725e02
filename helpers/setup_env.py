"""What the Setup cell of every notebook calls once the repository is importable.

Minimum versions are checked, never pinned: Colab ships its own torch/torchvision and must keep them.
"""
from __future__ import annotations

import importlib
import platform
import sys

#: The oldest versions the notebooks are written for (torchvision.transforms.v2 with tv_tensors,
#: torch.utils.data.default_collate_fn_map, torch.load(weights_only=True), torch.amp).
MIN_VERSIONS = {
    "torch": "2.3",
    "torchvision": "0.18",
    "numpy": "1.24",
    "PIL": "9.1",
    "matplotlib": "3.7",
    "tqdm": "4.60",
    "psutil": "5.9",
}
#: Import name -> the name pip installs it by (only for what Colab might lack).
PIP_NAMES = {"PIL": "pillow"}


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
            raise RuntimeError(
                f"{module} {version} is older than {minimum}, the oldest these notebooks support: "
                f"pip install -U {PIP_NAMES.get(module, module)}"
            )
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
