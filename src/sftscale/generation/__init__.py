"""Stage *generate*: prompts -> responses, behind one ``Generator`` over interchangeable backends.

Modules: ``generator`` (``Generator``, the HF backend with its own batched decode loop, checkpoint
identity), ``remote`` (OpenAI-compatible servers and vLLM), ``cache`` (content-addressed
generations). Not handled here: scoring (``sftscale.tasks``) and results files
(``sftscale.evaluation``). Importing this package does not import torch.
"""

from .generator import Generator, resolve_checkpoint

__all__ = ["Generator", "resolve_checkpoint"]
