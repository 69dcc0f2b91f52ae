"""The root filesystem: bootstrap, cache, configuration, the customisation hook, reproducibility."""
