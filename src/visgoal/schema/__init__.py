"""JSON schemas for params.yaml and envs/*.yaml."""
