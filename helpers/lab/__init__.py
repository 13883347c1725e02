"""Code that explains, checks or measures the pipeline in ``helpers/``: the reading of ``default_collate``,
the torchvision v2 reference, batch comparison, deliberate mistakes, memory measurement, the benchmark
and the validation sweeps. Nothing on the training path imports this package (tests/test_layout.py)."""
