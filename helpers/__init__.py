"""Helper modules shared by the notebooks: one job per module.

- ``project``     paths of this repository and the one place that names its GitHub URL
- ``setup_env``   minimum-version checks, device choice, Colab detection (the Setup cell)
- ``runconfig``   the quick (CPU/CI) and full (GPU) run sizes, picked automatically
- ``errors``      the exception types that name the bad file and entry
- ``synth``       the synthetic face-scene generator (``python -m helpers.synth``)
- ``datafiles``   reading and validating ``bbox.json``; the train/validation/test file lists
- ``convert``     WIDER FACE / COCO annotations to a data folder (``python -m helpers.convert``)
- ``real_photo``  a real photograph (scikit-image's astronaut) with its face box, and a model's scores on it
- ``storage``     paths and boxes kept in NumPy arrays, safe to share with workers
- ``dataset``     ``FaceDataset``: lazy image reading, dict samples
- ``transforms``  ``Rescale``, ``ConvertGroundTruth``, ``ToTensor``
- ``collate``     a reading of ``default_collate`` and a batch checker
- ``loader``      DataLoader construction, worker seeding, device transfer
- ``model``, ``metrics``, ``baseline``, ``train``   the per-pixel classifier and its evaluation
- ``tune``        ``python -m helpers.tune``: training choices compared on the validation split
- ``shards``      tar shards in the WebDataset layout: writer (``python -m helpers.shards``), reader, splitting
- ``distributed`` ``torchrun -m helpers.distributed``: DDP training over processes and machines
- ``memory``      PSS measurement of a process tree
- ``bench``       ``python -m helpers.bench all|speed|decode|growth|memory|report``: docs/benchmarks.md's figures
- ``plotting``    boxes, masks and batches drawn for the notebooks
- ``notebook``    shows a helper's real source in a notebook (one source of truth); headline results
"""
