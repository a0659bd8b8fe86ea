"""Janus: aligning language models to individual preferences via system message generalization."""

__version__ = "0.1.0"
