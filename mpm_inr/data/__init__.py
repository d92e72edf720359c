"""MPM datasets on disk (contract 1): layout, validation, generation, and the reference 21-column layout.

- `dataset_dir(root, scenario_name, seed)`, `open_dataset(path) -> MPMDataset` (validating, memory-mapped),
  `ensure_dataset(scenario_cfg, seed, root, device="cpu", progress=True)` (cached or generated).
- `mpm_inr.data.dataset.verify_fingerprint(ds)`: the sha256 of every array, recorded while it is written,
  computed again from the files and compared (`python generate.py ... verify=true`).
- `mpm_inr.data.reference_layout`: export/import of MPM_pytorch's single (frames, particles, 21) array.
- `mpm_inr.data.window`: the training window of one field.
"""

from mpm_inr.data.dataset import (
                                  ALL_FIELDS,
                                  FRAME_FIELDS,
                                  PARTICLE_FIELDS,
                                  DatasetWriter,
                                  MPMDataset,
                                  dataset_dir,
                                  open_dataset,
)
from mpm_inr.data.generate import ensure_dataset, generate_dataset

__all__ = [
    "ALL_FIELDS", "FRAME_FIELDS", "PARTICLE_FIELDS", "DatasetWriter", "MPMDataset", "dataset_dir",
    "ensure_dataset", "generate_dataset", "open_dataset",
]
