"""Expert identification: probe sets, routing them through a model, and the ΔΦ selection of expert sets."""
