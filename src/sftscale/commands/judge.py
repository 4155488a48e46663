"""``sftscale judge DIR --model REF``: why each wrong response failed, labelled by a judge."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def judge_cmd(
    run_dir: Path = typer.Argument(..., help="run directory of a study"),
    model: str = typer.Option(..., "--model", help="the judge: openai:http://host:port/v1/<model> "
                              "(key from $OPENAI_API_KEY) or a local model reference run in-process"),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="requests in flight (server judges)"),
    timeout: float = typer.Option(60.0, "--timeout", min=0.1, help="seconds per request"),
    retries: int = typer.Option(3, "--retries", min=0, help="retries of a timeout, connection error, 429 or 5xx"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="rows per batch (local judge)"),
    check: Optional[Path] = typer.Option(None, "--check", help="a hand-labelled JSONL set to measure "
                                         "agreement on (e.g. tests/data/judge_gsm8k.jsonl)"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="tokens per answer "
                                             "(default 96 for a server, 64 in-process; more for reasoning models)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1,
                                        help="judge at most N wrong responses per cell (the first; rates are scaled)"),
) -> None:
    """Label every wrong response of DIR's finished cells: DIR/judge/labels.jsonl, DIR/judge.json.

    Answers are cached in DIR/judge/cache.jsonl by (response, judge, prompt version): a rerun,
    or a run resumed after Ctrl-C, sends only what is missing. Failed requests are counted and
    asked again next time. `sftscale report DIR` then draws errors by label."""
    import sys

    from ..io import InputError
    from ..judge import judge_run_dir, make_client
    from ..judge.run import check_outputs, judge_json_path
    from ..rundir import layout

    if not layout.store_path(run_dir).exists():  # before a local judge is loaded
        raise InputError(run_dir, f"not a run directory (no {layout.STORE})")
    if check is not None and not check.is_file():
        raise InputError(check, "no such file", field="--check")
    check_outputs(run_dir)
    client = make_client(model, concurrency=concurrency, timeout_s=timeout, retries=retries,
                         batch_size=batch_size, max_tokens=max_tokens)
    doc = judge_run_dir(run_dir, client, check=check, say=lambda s: print(s, file=sys.stderr), limit=limit)
    st, run = doc["status"], doc["run"]
    print(f"judged {sum(st.values())} responses: {st['ok']} labelled, {st['unparsed']} unparsed, "
          f"{st['failed']} failed ({run['sent']} sent, {run['cached']} from the cache)")
    for name, a in sorted(doc["agreement"].get("toy", {}).items()):
        print(f"  agreement with the toy world's truth, {name}: {_agree_line(a)}")
    if "check" in doc["agreement"]:
        print(f"  agreement with the hand-checked set: {_agree_line(doc['agreement']['check'])}")
    print(judge_json_path(run_dir))


def _agree_line(a: dict) -> str:
    c = a["coarse"]
    if not c["n"]:
        return f"{a['n']} responses, none labelled"
    acc = c["accuracy"]
    k = c["kappa"]
    ks = "undefined" if k is None else f"{k['mid']:.2f}"
    return (f"{a['n_parsed']}/{a['n']} labelled; format vs reasoning accuracy {acc['mid']:.2f}"
            f" [{acc['lo']:.2f}, {acc['hi']:.2f}], kappa {ks}")


def register(app: typer.Typer) -> None:
    app.command("judge")(judge_cmd)
