"""Statistics as data: accuracy gaps and gains with paired CIs, routing divergence, flip rates, regressions."""
