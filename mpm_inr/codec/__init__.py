"""An INR codec: a trained model as one checksummed file, decoded and re-scored (`python -m mpm_inr.codec`)."""

from mpm_inr.codec.decode import CodecModel, load
from mpm_inr.codec.encode import CodecSettings, encode_model
from mpm_inr.codec.format import FORMAT_VERSION, CodecError

__all__ = ["FORMAT_VERSION", "CodecError", "CodecModel", "CodecSettings", "encode_model", "load"]
