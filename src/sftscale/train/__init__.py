"""Stage *train*: one finetuning cell = (model, task, N, seed, recipe) -> checkpoint + ``train_meta.json``.

Modules: ``recipe`` (``Recipe``, the default recipes, THE steps rule), ``examples`` (``IGNORE``,
the seeded subset, tokenising with the prompt masked, mask checks, packing), ``cell``
(``train_cell``, ``read_meta``), ``loop`` (the one training loop that pretraining and SFT share),
``trl_adapter`` (TRL's ``SFTTrainer`` behind the same rows), ``distributed`` (DDP through
accelerate, FSDP2 through torch, for a cell in several processes), ``launch`` (starting those
processes: torchrun or Ray Train).

Not handled here: evaluation of the checkpoint (``sftscale.evaluation``), scheduling cells
(``sftscale.study``). Importing this package does not import torch.
"""

from .cell import META, read_meta, train_cell
from .examples import IGNORE, select_subset
from .recipe import Recipe, default_recipe, recipe_with, steps_for

__all__ = ["IGNORE", "META", "Recipe", "default_recipe", "read_meta", "recipe_with",
           "select_subset", "steps_for", "train_cell"]
