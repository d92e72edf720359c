"""Hydra sweeper `mpm_inr_list`: launch an explicit JSON list of override lists as one batch (agent rounds)."""
