"""lte: arbitrary-scale image super-resolution with LTE, LIIF and Meta-SR (PyTorch Lightning + Hydra)."""

__version__ = "0.1.1"
