"""The compute dtypes a config may name (`model.dtype`), one table for the supernet, its config
check and final training: bfloat16 computes in bf16 with float32 master weights."""

import jax.numpy as jnp

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
