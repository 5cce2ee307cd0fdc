"""Model families behind the seam besides our own Transformer (core/model.py): Hugging Face models."""
