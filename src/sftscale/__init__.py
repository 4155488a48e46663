"""sftscale: how a language model's abilities grow with the amount of post-training data.

Importing this package has no side effects: no downloads, no global state, no torch import.
"""

__version__ = "0.1.0"
