"""lr passes; importing this package registers them all."""
from . import (cleanup, conv_pool, fusion, lowering, pointwise_chain, shrink_channels,  # noqa: F401  (registration)
               sink_upsample, sparse)
from .base import PASSES, Pass, PassError, parse_pipeline, run_pipeline

# lr-detect-sparsity runs after fusion: BN folding scales filters, so zeros stay zeros.
# lr-sink-upsample turns a residual conv it moves into conv + upsample + add: lr-fuse-elementwise
# runs again to fuse that add into the residual's producer.
# lr-shrink-pruned-channels needs the activations and biases fused (a dead filter's constant is
# act(bias)) and runs before lr-detect-sparsity, which then describes what is left.
# lr-fuse-pointwise-chain and lr-fuse-conv-pool come last: they need the activations and residuals
# already fused (a conv's activation runs before the pool it feeds).
DEFAULT_OPT_PIPELINE = ("builtin.module(lr-fuse-conv-bn-act, lr-fuse-elementwise, lr-canonicalize, lr-sink-upsample, "
                        "lr-fuse-elementwise, lr-shrink-pruned-channels, lr-detect-sparsity, lr-fuse-pointwise-chain, "
                        "lr-fuse-conv-pool)")

__all__ = ["PASSES", "Pass", "PassError", "parse_pipeline", "run_pipeline", "DEFAULT_OPT_PIPELINE"]
