"""INR networks. Models take tensors and return tensors; they know nothing of Hydra, files or W&B."""

from mpm_inr.models.context import NetworkContext
from mpm_inr.models.coordinates import CoordinateSource
from mpm_inr.models.registry import (
           INR_TYPES,
           InrType,
           build_network,
           get_inr_type,
           network_from_config,
)

__all__ = ["INR_TYPES", "CoordinateSource", "InrType", "NetworkContext", "build_network", "get_inr_type",
           "network_from_config"]
