"""What finetuning changed, token by token (issue 33; docs/token-shift.md).

- ``compare``: teacher-force (prompt, response) pairs through the finetuned model and its base
  in one batched pass each; per response token the base rank, both log-probabilities and
  KL(finetuned || base) over the vocabulary.
- ``stage``: the per-cell stage ``shift`` (cells with N > 0, after eval), writing
  ``cells/<key>/shift/tokens.jsonl.gz`` and its metrics.
- ``summary``: a run directory's ``shift.json`` (bands, mean KL, bootstrap intervals over
  items, first tokens vs the rest) and ``shift/tokens.jsonl.gz``.

Roles (format / content / other) come from each task's ``Task.role_spans`` (``tasks.roles``).
This package imports the pipeline's ``rundir`` and ``grid`` but never ``study`` or ``plan``
(study/stages.py lists its stage). Not handled: generation (the responses are eval's).
"""

from __future__ import annotations

from .compare import Shift, bands, compare

__all__ = ["Shift", "bands", "compare"]
