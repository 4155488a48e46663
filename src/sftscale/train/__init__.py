"""Stage *train*: one finetuning cell = (model, task, N, seed, recipe) -> checkpoint + ``train_meta.json``.

Modules: ``cell`` (recipe, subset, examples, ``train_cell``), ``loop`` (the one training loop that
pretraining and SFT share), ``trl_adapter`` (TRL's ``SFTTrainer`` behind the same rows).

Not handled here: evaluation of the checkpoint (``sftscale.evaluation``), scheduling cells
(``sftscale.study``). Importing this package does not import torch.
"""

from .cell import META, Recipe, default_recipe, read_meta, select_subset, steps_for, train_cell

__all__ = ["META", "Recipe", "default_recipe", "read_meta", "select_subset", "steps_for", "train_cell"]
