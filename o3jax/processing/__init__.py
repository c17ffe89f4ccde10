"""Turning videos, images and text into model inputs: frame sampling and resizing,
patchification, the Qwen chat template and tokenizers, grounded-text boxes."""
