"""Stage *evaluate*: generate for a task's test items, score them, write lm-eval-shaped results.

``evaluate(model, task, adapter=...)`` writes ``results_<ts>.json`` and ``samples_<task>_<ts>.jsonl``.
Modules: ``run`` (``evaluate`` and the prompt-template guard), ``results`` (what the two files
hold, and writing them). Not handled here: how responses are produced
(``sftscale.generation``) or scored (``sftscale.tasks``). Importing this package does not
import torch.
"""

from .run import check_template, evaluate, find_train_meta

__all__ = ["check_template", "evaluate", "find_train_meta"]
