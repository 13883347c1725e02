"""Helper modules shared by the notebooks: one job per module.

The pipeline and the training path (what a training run imports):

- ``project``     paths of this repository and the one place that names its GitHub URL
- ``setup_env``   minimum-version checks, device choice, Colab detection (the Setup cell)
- ``runconfig``   the quick (CPU/CI) and full (GPU) run sizes, picked automatically; ``FACES_DATA``
- ``errors``      the exception types that name the bad file and entry
- ``synth``       the synthetic face-scene generator (``python -m helpers.synth``)
- ``datafiles``   reading and validating ``bbox.json``; the train/validation/test file lists
- ``convert``     WIDER FACE / COCO annotations to a data folder (``python -m helpers.convert``)
- ``storage``     paths and boxes kept in NumPy arrays, safe to share with workers
- ``dataset``     ``FaceDataset``: lazy image reading (reduced JPEG decode on request), dict samples
- ``transforms``  ``Rescale``, ``ConvertGroundTruth``, ``ToTensor``
- ``loader``      DataLoader construction, worker seeding, the random flip, ``SplitBatches``, device transfer
- ``collate``     the collate functions: channels_last batches (the pipeline's), a variable number of boxes per image
- ``data_path``   ``build_loaders``: the whole data path, lists to batches, for the three splits
- ``model``       the compact U-Net, its default size (``build_model``), its receptive field
- ``on_device``   a batch on the device: ``uint8`` normalised there; mixed-precision settings
- ``loss``        ``FaceLoss`` (BCE, optional weight and soft Dice) and the face-pixel weight
- ``train``       the training step, one epoch, the outer loop (``python -m helpers.train``)
- ``checkpoints`` atomic checkpoints, resuming, loading a trained model
- ``metrics``     pixel, box and face-level counts
- ``evaluation``  a model scored on a split; the test split scored once (``final_test``)
- ``inference``   ``predict``: the face score of every pixel of one image
- ``baseline``    the colour-threshold baseline, its bins chosen on validation
- ``shards``      tar shards in the WebDataset layout: writer (``python -m helpers.shards``), reader, splitting
- ``distributed`` ``torchrun -m helpers.distributed``: DDP training over processes and machines
- ``real_photo``  a real photograph (scikit-image's astronaut) with its face box, and a model's scores on it
- ``plotting``    boxes, masks, batches and error maps drawn for the notebooks
- ``notebook``    shows a helper's real source in a notebook (one source of truth); headline results

``helpers.lab``: the code that explains, checks or measures the pipeline, which the training path never
imports (a test checks):

- ``lab.collate_reading``  ``default_collate`` read branch by branch, today's and PyTorch 0.4.0's
- ``lab.batches``          batch comparison and description, shared-memory checks, the raw-boxes mistake
- ``lab.v2_reference``     the transforms checked against torchvision's transforms v2
- ``lab.mistakes``         deliberate mistakes the notebooks run (an RNG made in ``__init__``)
- ``lab.memory``           PSS of a process tree; the memory fixtures (index-only dataset, list sizes)
- ``lab.bench``            ``python -m helpers.lab.bench all|speed|decode|growth|memory|start-methods|training|transport|report``:
                           the command line; each measurement in its own module (names importable from here):
- ``lab.bench_machine``    the machine a result ran on; the contention probe (were the cores free)
- ``lab.bench_decode``     decode paths side by side; per-stage time; the FaceDataset a decode path stands for
- ``lab.bench_speed``      the pipeline's images/s against the decode limit and the parallel limit
- ``lab.bench_memory``     memory: the index alone under each start method, the loader as the data set grows
- ``lab.bench_transport``  the CPU cost of handing batches from workers to the main process
- ``lab.bench_training``   ``train()``'s epoch loop, the default loader against the reference one
- ``lab.bench_report``     a result as the markdown tables of docs/benchmarks.md; the required fields
- ``lab.tune``             ``python -m helpers.lab.tune``: training choices compared on the validation split
"""
