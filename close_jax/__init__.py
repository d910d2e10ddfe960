"""close_jax: CLOSE (curriculum learning on the sharing extent) supernets in JAX.

Importing the package changes nothing in the process: a program applies close_jax's measured
XLA:CPU defaults at its start with `close_jax.xla_flags.apply_defaults()` (the command line,
the notebook and the experiments do).
"""
