"""mpm-inr: implicit neural representations of MLS-MPM particle fields."""

from mpm_inr.confres import register as _register_conf_resolvers

_register_conf_resolvers()
