"""Error labels from a judge model: why each wrong response failed (docs/judge.md).

``judge_run_dir(run_dir, make_client(ref))`` labels every wrong response of a run directory's
done cells with one of its task's labels (``taxonomy``), through an OpenAI-compatible chat
endpoint or a local model (``clients``), caching each answer (``cache``), and writes
``DIR/judge/labels.jsonl`` and ``DIR/judge.json`` (shares with bootstrap intervals, agreement
with the toy world's truth: ``truth``, ``stats``).
"""

from .clients import ChatClient, LocalClient, make_client
from .prompt import PROMPT_VERSION, parse
from .run import judge_run_dir, load_check_set, read_judge_json
from .taxonomy import COARSE, Taxonomy, taxonomy

__all__ = ["COARSE", "PROMPT_VERSION", "ChatClient", "LocalClient", "Taxonomy", "judge_run_dir",
           "load_check_set", "make_client", "parse", "read_judge_json", "taxonomy"]
