"""Checkpoint conversion: Hugging Face safetensors <-> o3jax."""

from o3jax.convert.hf import load_pretrained, save_pretrained
