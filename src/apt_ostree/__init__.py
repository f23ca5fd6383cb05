"""apt-ostree: atomic, image-based Debian systems with package layering."""

__version__ = "0.1.0"
