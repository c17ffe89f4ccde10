"""Studies of the tiny model (see research/README.md): code that uses o3jax, never used by it."""
