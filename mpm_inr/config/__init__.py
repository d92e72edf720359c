"""The one typed owner of the training config contract (conf/ and everything that reads it).

Submodules, lowest first (import the one you need; this package imports nothing itself, so a model may read a
declaration without loading Hydra):

- `fields`: the MPM fields a run can fit (name, dataset array, components, units).
- `choices`: every closed set of option names (inr_types, samplers, losses, optimizers, schedulers, ...).
- `params`: every numeric / choice key's valid range (and the agent's exploration range), with a one-line doc.
- `schema`: dataclass schemas per config group, registered in Hydra's ConfigStore; `check_types`.
- `build`: instantiate the `_target_` of the optimizer / scheduler / logger / trainer groups, minus our own keys.
- `step_frames`: how many frames a `train.sampler=full` step reads (`train.step_frames`), which the presets'
  resolvers, the training step and the cost model follow.
- `compose`: `compose_train`, the one way to compose conf/train.yaml outside a Hydra run.
"""
