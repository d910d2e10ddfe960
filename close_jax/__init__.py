"""close_jax: CLOSE (curriculum learning on the sharing extent) supernets in JAX.

Importing the package adds close_jax's measured XLA:CPU defaults to `XLA_FLAGS` (see
`close_jax.xla_flags`) unless JAX's backend is already running, a flag is already set by the user,
or `CLOSE_JAX_XLA_DEFAULTS=0`.
"""

import os as _os

from close_jax import xla_flags as _xla_flags

if _os.environ.get('CLOSE_JAX_XLA_DEFAULTS', '1') != '0' and not _xla_flags.backend_started():
  _xla_flags.apply_cpu_defaults()
