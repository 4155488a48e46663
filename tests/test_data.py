"""Shipped data manifests and the record loader."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest

from sftscale.data import (
    DataIntegrityError,
    dataset_dir,
    load_records,
    manifest,
    read_numbered,
    split_file,
    verify,
    write_manifest,
)
from sftscale.io import InputError


@pytest.mark.parametrize("name", ["gsm8k", "fanoutqa"])
def test_shipped_manifest_verifies(name):
    m = verify(name)  # re-hashes every file and recounts its records
    assert m["name"] == name
    assert (dataset_dir(name) / m["license_file"]).read_text().strip()
    for field in ("source", "version", "license"):
        assert m[field]


def test_gsm8k_counts_and_licence():
    m = manifest("gsm8k")
    assert m["files"]["train.jsonl"]["records"] == 7473
    assert m["files"]["test.jsonl"]["records"] == 1319
    assert len(load_records("gsm8k", "train")) == 7473
    assert len(load_records("gsm8k", "test")) == 1319
    assert "MIT" in (dataset_dir("gsm8k") / "LICENSE").read_text()


def test_fanoutqa_licence_and_single_split():
    m = manifest("fanoutqa")
    assert m["license"] == "CC-BY-SA-4.0"
    assert "Attribution-ShareAlike 4.0" in (dataset_dir("fanoutqa") / m["license_file"]).read_text()
    assert len(load_records("fanoutqa")) == 310  # only one split: no split= needed


def test_split_errors():
    with pytest.raises(KeyError, match="pass split="):
        split_file("gsm8k")
    with pytest.raises(KeyError, match="no split 'dev'"):
        split_file("gsm8k", "dev")


def _make_dataset(tmp_path):
    d = tmp_path / "mini"
    d.mkdir()
    (d / "LICENSE").write_text("CC0\n")
    (d / "test.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n')
    write_manifest(d, name="mini", source="here", version="0", license="CC0", license_file="LICENSE",
                   files=["test.jsonl"])
    return d


def test_write_manifest_then_tamper(tmp_path):
    d = _make_dataset(tmp_path)
    m = verify(d)
    assert m["files"]["test.jsonl"]["records"] == 2  # the blank line is not a record
    (d / "test.jsonl").write_text('{"a": 1}\n\n{"a": 3}\n')
    with pytest.raises(DataIntegrityError, match="sha256"):
        verify(d)


def test_manifest_record_count_checked(tmp_path):
    d = _make_dataset(tmp_path)
    m = json.loads((d / "MANIFEST.json").read_text())
    m["files"]["test.jsonl"]["records"] = 3
    (d / "MANIFEST.json").write_text(json.dumps(m))
    with pytest.raises(DataIntegrityError, match="2 records != manifest 3"):
        verify(d)
    (d / "LICENSE").unlink()
    with pytest.raises(DataIntegrityError, match="licence"):
        verify(d)


def test_manifest_missing_field(tmp_path):
    d = _make_dataset(tmp_path)
    m = json.loads((d / "MANIFEST.json").read_text())
    del m["license"]
    (d / "MANIFEST.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="field 'license'"):
        manifest(d)


def test_load_local_formats(tmp_path):
    rows = [{"question": "q1", "answer": "1"}, {"question": "q2", "answer": "2"}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "c.json").write_text(json.dumps(rows))
    (tmp_path / "d.json").write_text(json.dumps({"data": rows}))
    (tmp_path / "e.json").write_text(json.dumps({"train": rows[:1], "test": rows}))
    import pandas as pd
    pd.DataFrame(rows).to_parquet(tmp_path / "f.parquet")
    for name in ("a.jsonl", "b.jsonl.gz", "c.json", "d.json", "f.parquet"):
        assert load_records(str(tmp_path / name)) == rows, name
    assert load_records(str(tmp_path / "e.json"), "train") == rows[:1]
    with pytest.raises(InputError, match="split"):
        load_records(str(tmp_path / "e.json"))


def test_local_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(InputError) as e:
        load_records(str(p))
    assert e.value.line == 3 and "bad.jsonl" in str(e.value)
    p.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(InputError, match="line 2"):
        read_numbered(p)
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(InputError, match="unsupported"):
        load_records(str(tmp_path / "x.csv"))
    with pytest.raises(InputError, match="no such file"):
        load_records(str(tmp_path / "missing.jsonl"))


def test_read_numbered_reports_real_line_numbers(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('\n{"a": 1}\n\n{"a": 2}\n')
    assert read_numbered(p) == [(2, {"a": 1}), (4, {"a": 2})]


def test_hub_id_offline_gives_clear_error(monkeypatch):
    # Only the failure path is testable here (no hub); with network this id does not exist.
    for k in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(InputError, match="Hugging Face") as e:
        load_records("sftscale-nobody/no-such-dataset-xyz", "test")
    assert "gsm8k" in str(e.value)  # lists what is shipped


def test_copied_dataset_dir_verifies(tmp_path):
    d = tmp_path / "fanoutqa"
    shutil.copytree(dataset_dir("fanoutqa"), d)
    assert verify(d)["name"] == "fanoutqa"
