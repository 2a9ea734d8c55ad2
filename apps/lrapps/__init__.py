"""lrapps: the style transfer, coloring and super-resolution apps compiled by lrc."""
__version__ = "0.1.0"
