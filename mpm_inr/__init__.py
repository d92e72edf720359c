"""mpm-inr: implicit neural representations of MLS-MPM particle fields.

Empty on purpose: `train.py` imports mpm_inr.warm.client before anything else, and a warm server's caller should
load no more than that (OmegaConf alone is 55 ms). The OmegaConf resolvers conf/ uses are registered by whoever
composes it (mpm_inr.config.compose, which train.py and generate.py load through mpm_inr.cli; agent/runs/trainconf).
"""
