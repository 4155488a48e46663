"""Knowledge injection: can post-training add facts, and does a model first post-trained for
reasoning integrate them better than the base model?

``run_knowledge(cfg, out) -> table`` runs it (``run.py``); ``load_config(path)`` reads the YAML
(``config.py``); ``toy_source`` / ``file_source`` give the facts and questions
(``sources.py``); ``paired_difference`` / ``bootstrap_rows`` give the paired bootstrap
intervals (``stats.py``). See docs/knowledge.md.

Not handled here: anything heavy at import time (torch and transformers load only when a run
starts).
"""

from __future__ import annotations

from .config import KnowledgeConfig, load_config, parse_config
from .run import run_knowledge
from .sources import file_source
from .stats import bootstrap_rows, paired_contrast, paired_difference, table_markdown
from .toy import toy_source

__all__ = ["KnowledgeConfig", "bootstrap_rows", "file_source", "load_config", "paired_contrast", "paired_difference",
           "parse_config", "run_knowledge", "table_markdown", "toy_source"]
