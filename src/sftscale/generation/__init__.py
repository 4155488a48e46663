"""Stage *generate*: prompts -> responses, behind one ``Generator`` over interchangeable backends.

Modules: ``backend`` (the ``Backend`` protocol, ``truncate_at_stop``, ``spec_dict``),
``checkpoint`` (checkpoint kind, resolution and content hashes), ``hf`` (``HFBackend``, the
transformers backend with its own batched decode loop), ``remote`` (OpenAI-compatible servers
and vLLM), ``cache`` (content-addressed generations), ``generator`` (``Generator``: picks a
backend, adds the cache). Imports run generator -> hf / remote -> backend, checkpoint, cache.
Not handled here: scoring (``sftscale.tasks``) and results files (``sftscale.evaluation``).
Importing this package does not import torch.
"""

from .backend import Backend, OnBatch, spec_dict, truncate_at_stop
from .checkpoint import checkpoint_hash, checkpoint_kind, resolve_checkpoint
from .generator import Generator
from .hf import HFBackend

__all__ = ["Backend", "Generator", "HFBackend", "OnBatch", "checkpoint_hash", "checkpoint_kind",
           "resolve_checkpoint", "spec_dict", "truncate_at_stop"]
