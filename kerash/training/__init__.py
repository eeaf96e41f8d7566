"""Training: batch order, optimisers, gradient engines (in-process or forked workers), the loop."""
