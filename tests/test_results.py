"""Result tables: schema documentation, validation, atomic + idempotent appends, run ids."""
from __future__ import annotations

import math
import os
import re
import socket
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from bridgeout import results

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- fixtures
def run_row(run_id="r1", **kw) -> dict:
    row = {
        "run_id": run_id, "grid": "g", "model": "lenet5", "regularizer": "bridgeout", "p": 0.3, "q": 1.5,
        "target_fraction": 0.75, "signed": False, "lam": math.nan, "dataset": "mnist", "protocol": "smoke", "epochs": 1,
        "epochs_done": 1, "width": 1.0, "n_train": 64, "n_test": 32, "seed": 0, "select": "final",
        "quirks": "", "final_test_acc": 0.5, "best_test_acc": 0.625, "best_epoch": 1, "wall_time_s": 1.25, "device": "cpu",
        "device_name": "cpu", "torch_version": "2.x", "cuda_version": "", "git_commit": "abc1234", "git_dirty": True,
        "date": "2026-01-01T00:00:00Z", "notebook": "data/runs/g/r1.ipynb", "precision": "bf16",
        "weights": f"data/weights/{run_id}.safetensors", "weights_sha256": "0123456789abcdef" * 4,
        "weights_bytes": 4096,
    }
    row.update(kw)
    return row


def runs_df(*ids, **kw) -> pd.DataFrame:
    return pd.DataFrame([run_row(i, **kw) for i in ids])


def pruning_df(run_id="r1", fractions=(0.0, 0.5), modes=("mask",)) -> pd.DataFrame:
    rows = []
    for mode in modes:
        for f in fractions:
            rows.append({"run_id": run_id, "criterion": "l2", "scope": "layer", "mode": mode, "fraction": f,
                         "test_acc": 0.5 * (1 - f), "test_loss": 1.0 + f, "params": 1000, "params_effective": 900,
                         "flops": 5000, "flops_effective": 4000,
                         "latency_b1_ms": math.nan if mode == "mask" else 0.5, "latency_b128_ms": math.nan,
                         "recalibrate_bn": False, "finetune_epochs": 0, "prune_s": 0.01, "adjust_s": 0.0,
                         "eval_s": 0.1, "cost_s": 0.02, "notebook": "", "pruner": "plain"})
    return pd.DataFrame(rows)


def history_df(run_id="r1", epochs=2) -> pd.DataFrame:
    return pd.DataFrame([{"run_id": run_id, "epoch": e, "lr": 0.1, "train_loss": 2.0 / e, "train_acc": 0.1 * e,
                          "test_loss": 2.1 / e, "test_acc": 0.1 * e, "seconds": 1.0, "images_per_s": 64.0}
                         for e in range(1, epochs + 1)])


def filters_df(run_id="r1") -> pd.DataFrame:
    return pd.DataFrame([{"run_id": run_id, "layer": layer, "filter": f, "norm": 0.5 + f,
                          "gamma": math.nan if layer == "head" else 1.0 - 0.1 * f, "beta": 0.0,
                          "bn_mean": math.nan if layer == "head" else 0.2 * f - 0.1,
                          "bn_var": math.nan if layer == "head" else 0.5 + f}
                         for layer in ("features.0.conv", "head") for f in range(3)])


def latency_df(run_id="r1") -> pd.DataFrame:
    return pd.DataFrame([{"run_id": run_id, "criterion": "l2", "fraction": f, "runtime": rt, "batch_size": b,
                          "threads": 1, "latency_ms": (1 - f) * b * (2 if rt == "torch" else 1), "repeats": 5,
                          "flops": int(1000 * (1 - f)), "params": 100, "device_name": "cpu",
                          "runtime_version": "1", "git_commit": "abcdef0", "date": "2026-11-29T18:00:00Z",
                          "notebook": "data/runs/prune-again/x.ipynb"}
                         for f in (0.0, 0.5) for rt in ("torch", "onnxruntime") for b in (1, 128)])


FRAMES = {"runs": lambda rid="r1": runs_df(rid), "pruning": pruning_df, "history": history_df,
          "filters": filters_df, "latency": latency_df}


# --------------------------------------------------------------------------- schema docs
def test_readme_documents_every_column_with_its_dtype():
    text = (REPO / "data" / "results" / "README.md").read_text()
    for name, schema in results.SCHEMAS.items():
        section = text.split(f"## `{results.path(name, '.').name}`", 1)[1].split("\n## ", 1)[0]
        documented = re.findall(r"^\| `([a-z0-9_]+)` \| (\w+) \|", section, flags=re.M)
        assert documented == [(c, d) for c, (d, _) in schema.items()], name


def test_schemas_match_the_producers():
    from bridgeout import prune, train
    # run_id is the run's; notebook is set by a later pruning pass, not by the sweep
    assert [c for c in results.PRUNING_SCHEMA if c not in ("run_id", "notebook")] == list(prune.SWEEP_COLUMNS)
    assert list(results.HISTORY_SCHEMA)[1:] == list(train.HISTORY_COLUMNS)
    for schema in results.SCHEMAS.values():
        assert all(d in ("str", "int", "float", "bool") and len(desc) > 10 for d, desc in schema.values())


# --------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("table", results.TABLES)
def test_append_then_load_round_trips(tmp_path, table):
    df = FRAMES[table]()
    assert results.append(table, df, tmp_path) == len(df)
    back = results.load(table, tmp_path)
    assert list(back.columns) == list(results.SCHEMAS[table])
    assert len(back) == len(df)
    for col, (dtype, _) in results.SCHEMAS[table].items():
        a, b = back[col].tolist(), df[col].tolist()
        if dtype == "float":
            assert all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b)), col
        else:
            assert a == b, col


def test_absent_table_is_empty_with_schema_columns(tmp_path):
    df = results.load("pruning", tmp_path)
    assert len(df) == 0 and list(df.columns) == list(results.PRUNING_SCHEMA)


def test_append_is_idempotent_by_run_id(tmp_path):
    assert results.append("pruning", pruning_df("a"), tmp_path) == 2
    assert results.append("pruning", pruning_df("a"), tmp_path) == 0
    before = results.path("pruning", tmp_path).read_bytes()
    assert results.append("pruning", pd.concat([pruning_df("a"), pruning_df("b")]), tmp_path) == 2
    df = results.load("pruning", tmp_path)
    assert sorted(df["run_id"].value_counts().items()) == [("a", 2), ("b", 2)]
    assert results.path("pruning", tmp_path).read_bytes().startswith(before)  # old rows untouched


def test_append_replace_overwrites_a_run(tmp_path):
    results.append("history", history_df("a", epochs=3), tmp_path)
    results.append("history", history_df("b", epochs=1), tmp_path)
    assert results.append("history", history_df("a", epochs=2), tmp_path, replace=True) == 2
    df = results.load("history", tmp_path)
    assert sorted(df[df.run_id == "a"]["epoch"]) == [1, 2] and list(df[df.run_id == "b"]["epoch"]) == [1]


def test_concurrent_appenders_lose_nothing(tmp_path, monkeypatch):
    # widen the read-modify-write window: without the lock file, appends would be lost
    write = results.atomic_write_csv

    def slow_write(*args, **kwargs):
        time.sleep(0.02)
        return write(*args, **kwargs)

    monkeypatch.setattr(results, "atomic_write_csv", slow_write)
    errors = []

    def worker(k):
        try:
            for j in range(4):
                results.append("runs", runs_df(f"t{k}-{j}"), tmp_path)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results.load("runs", tmp_path)["run_id"]) == sorted(f"t{k}-{j}" for k in range(4) for j in range(4))


# --------------------------------------------------------------------------- crash safety
@pytest.mark.parametrize("where", ["replace", "fsync"])
def test_crash_mid_write_leaves_table_intact(tmp_path, monkeypatch, where):
    results.append("runs", runs_df("a", "b"), tmp_path)
    target = results.path("runs", tmp_path)
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, where, boom)
    with pytest.raises(OSError, match="simulated crash"):
        results.append("runs", runs_df("c"), tmp_path)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert list(results.load("runs", tmp_path)["run_id"]) == ["a", "b"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert results.append("runs", runs_df("c"), tmp_path) == 1  # and the next append works


def test_malformed_new_rows_write_nothing(tmp_path):
    results.append("runs", runs_df("a"), tmp_path)
    before = results.path("runs", tmp_path).read_bytes()
    with pytest.raises(ValueError, match="final_test_acc"):
        results.append("runs", runs_df("b", final_test_acc=97.5), tmp_path)
    assert results.path("runs", tmp_path).read_bytes() == before


# --------------------------------------------------------------------------- validation
def _write_and_corrupt(tmp_path, table, df, edit):
    results.append(table, df, tmp_path)
    p = results.path(table, tmp_path)
    p.write_text(edit(p.read_text()))
    return p


def _set_cell(text, line, col, value):
    """Replace one CSV field (1-based line number incl. header) of a comma-free table."""
    lines = text.split("\n")
    header = lines[0].split(",")
    fields = lines[line - 1].split(",")
    fields[header.index(col)] = value
    lines[line - 1] = ",".join(fields)
    return "\n".join(lines)


@pytest.mark.parametrize("table, col, value, message", [
    ("runs", "final_test_acc", "1.2", r"out of range; allowed \[0.0, 1.0\]"),
    ("runs", "model", "vgg17", "unknown name 'vgg17'"),
    ("runs", "regularizer", "bridgeup", "unknown name 'bridgeup'"),
    ("runs", "dataset", "imagenet", "unknown name 'imagenet'"),
    ("runs", "epochs", "three", "bad value 'three'"),
    ("runs", "seed", "1.5", "bad value '1.5'"),
    ("runs", "signed", "maybe", "bad value 'maybe'"),
    ("runs", "p", "1.0", "out of range"),
    ("runs", "model", "", "value is missing"),
    ("pruning", "fraction", "1.0", r"out of range; allowed \[0.0, 1.0\)"),
    ("pruning", "test_acc", "-0.1", "out of range"),
    ("pruning", "scope", "only:0", "unknown name 'only:0'; known: 'layer', 'global', 'only:<k>'"),
    ("history", "test_acc", "nan-ish", "bad value"),
])
def test_load_refuses_bad_values_naming_file_line_and_column(tmp_path, table, col, value, message):
    df = {"runs": runs_df("a", "b"), "pruning": pruning_df("a"), "history": history_df("a")}[table]
    p = _write_and_corrupt(tmp_path, table, df, lambda t: _set_cell(t, 3, col, value))
    with pytest.raises(ValueError) as err:
        results.load(table, tmp_path)
    msg = str(err.value)
    assert str(p) in msg and "line 3" in msg and f"column {col!r}" in msg
    assert re.search(message, msg), msg


def test_a_one_layer_scope_is_a_valid_pruning_row(tmp_path):
    rows = pruning_df("a").assign(scope="only:13")
    results.append("runs", runs_df("a"), tmp_path)
    assert results.append("pruning", rows, tmp_path) == len(rows)
    assert set(results.load("pruning", tmp_path)["scope"]) == {"only:13"}


def test_load_refuses_missing_and_extra_columns(tmp_path):
    p = _write_and_corrupt(tmp_path, "history", history_df("a"),
                           lambda t: t.replace("images_per_s", "img_per_s", 1))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['images_per_s'\]; unexpected column\(s\) "
                                         r"\['img_per_s'\]") as err:
        results.load("history", tmp_path)
    assert str(p) in str(err.value)


@pytest.mark.parametrize("table, df, dup_line", [
    ("runs", runs_df("a", "b", "a"), 4),
    ("pruning", pd.concat([pruning_df("a"), pruning_df("a", fractions=(0.5,))]), 4),
    ("history", pd.concat([history_df("a", 2), history_df("a", 1)]), 4),
])
def test_load_refuses_duplicated_keys(tmp_path, table, df, dup_line):
    # written around append (which would refuse them), as a hand-edited file would be
    p = results.path(table, tmp_path)
    results.atomic_write_csv(p, df)
    with pytest.raises(ValueError, match=rf"line {dup_line}, .*duplicated key \(run_id='a'.*first seen on line"):
        results.load(table, tmp_path)
    with pytest.raises(ValueError, match="duplicated key"):
        results.append(table, df, tmp_path / "other")


def test_unreadable_table_is_a_clear_error(tmp_path):
    p = results.path("runs", tmp_path)
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match=re.escape(str(p))):
        results.load("runs", tmp_path)


def test_bad_table_name():
    with pytest.raises(ValueError, match="unknown table 'run'"):
        results.load("run")


# --------------------------------------------------------------------------- ids, provenance, joins
BASE = dict(model="lenet5", regularizer="bridgeout", p=0.3, q=1.5, target_fraction=0.75, signed=False,
            dataset="mnist", protocol="fast", epochs=3, width=1.0, n_train=None, n_test=None, seed=0,
            fractions=[0.0, 0.5])


def test_make_run_id_is_readable_and_deterministic():
    rid = results.make_run_id(BASE)
    assert re.fullmatch(r"mnist-lenet5-w1-bridgeout-fast-e3-s0-[0-9a-f]{6}", rid), rid
    assert results.make_run_id(dict(reversed(list(BASE.items())))) == rid
    # where it runs and writes does not change the id; what it computes does
    assert results.make_run_id({**BASE, "device": "cuda", "results_dir": "/x", "grid": "g"}) == rid
    changed = [results.make_run_id({**BASE, k: v}) for k, v in
               [("p", 0.4), ("q", 1.0), ("fractions", [0.0]), ("signed", True), ("n_train", 100)]]
    assert len(set(changed + [rid])) == 6
    assert results.make_run_id({**BASE, "width": 0.25, "n_train": 256, "epochs": None}).startswith(
        "mnist-lenet5-w0.25-bridgeout-fast-n256-s0-")
    slim = {**BASE, "regularizer": "slimming", "lam": 1e-3}
    assert results.make_run_id(slim).startswith("mnist-lenet5-w1-slimming-lam0.001-fast-e3-s0-")
    assert results.make_run_id({**slim, "lam": 1e-4}) != results.make_run_id(slim)
    with pytest.raises(ValueError, match="must contain 'seed'"):
        results.make_run_id({k: v for k, v in BASE.items() if k != "seed"})


def test_provenance_fields_and_no_host_name():
    prov = results.provenance("cpu")
    assert set(prov) == {"git_commit", "git_dirty", "torch_version", "cuda_version", "device", "device_name",
                         "python_version", "date"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", prov["date"])
    assert prov["device"] == "cpu" and isinstance(prov["git_dirty"], bool)
    assert prov["git_commit"] == "" or re.fullmatch(r"[0-9a-f]{40}", prov["git_commit"])
    host = socket.gethostname()
    assert all(host not in str(v) for v in prov.values()) or len(host) < 3


def test_load_joined_merges_parameters_of_finished_runs(tmp_path):
    results.append("runs", runs_df("a", regularizer="dropout"), tmp_path)
    results.append("pruning", pruning_df("a"), tmp_path)
    results.append("pruning", pruning_df("orphan"), tmp_path)  # its run never finished
    j = results.load_joined(tmp_path)
    assert len(j) == 2 and set(j["run_id"]) == {"a"}
    assert list(j["regularizer"]) == ["dropout", "dropout"] and list(j["fraction"]) == [0.0, 0.5]
    assert {"model", "width", "protocol", "seed"} <= set(j.columns)
    h = results.load_joined(tmp_path, table="history")
    assert len(h) == 0 and "model" in h.columns


def test_table_written_before_a_later_column_loads_with_it_empty(tmp_path):
    """runs.csv files written before the `quirks` column existed load with it empty, and the
    next append writes it; any other missing column is still refused."""
    old = runs_df("a").drop(columns=["quirks"])
    old.to_csv(tmp_path / "runs.csv", index=False)
    back = results.load("runs", tmp_path)
    assert list(back.columns) == list(results.RUNS_SCHEMA) and back["quirks"].fillna("").eq("").all()
    results.append("runs", runs_df("b", quirks="momentum_reset"), tmp_path)
    assert "quirks" in (tmp_path / "runs.csv").read_text().splitlines()[0].split(",")
    assert list(results.load("runs", tmp_path)["quirks"].fillna("")) == ["", "momentum_reset"]
    runs_df("c").drop(columns=["seed"]).to_csv(tmp_path / "runs.csv", index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['seed'\]"):
        results.load("runs", tmp_path)


def test_truncated_table_is_refused_and_left_alone(tmp_path):
    results.append("runs", runs_df("a", "b"), tmp_path)
    p = tmp_path / "runs.csv"
    data = p.read_bytes()
    p.write_bytes(data[:-25])                     # cut inside the last row's values
    cut = p.read_bytes()
    with pytest.raises(ValueError, match=r"runs.csv, line 3: the last line is incomplete"):
        results.load("runs", tmp_path)
    with pytest.raises(ValueError, match="the last line is incomplete"):
        results.append("runs", runs_df("c"), tmp_path)
    assert p.read_bytes() == cut                   # never rewritten


@pytest.mark.parametrize("column, value, message", [
    ("date", "2026/01/01", r"column 'date': '2026/01/01' is not a UTC date"),
    ("git_commit", "HEAD~1", r"column 'git_commit': 'HEAD~1' is not a git commit"),
    ("notebook", "runs/a\nb.ipynb", r"column 'notebook': .* is not a path \(no control characters\)"),
])
def test_badly_formatted_text_is_refused_and_nothing_written(tmp_path, column, value, message):
    results.append("runs", runs_df("a"), tmp_path)
    before = (tmp_path / "runs.csv").read_bytes()
    with pytest.raises(ValueError, match=message):
        results.append("runs", runs_df("b", **{column: value}), tmp_path)
    assert (tmp_path / "runs.csv").read_bytes() == before
    # the same value already in the file is refused on reading, naming the line
    bad = runs_df("c", **{column: value})
    with pytest.raises(ValueError, match=r"runs.csv, line 3, " + message):
        pd.concat([results.load("runs", tmp_path), bad]).to_csv(tmp_path / "runs.csv", index=False) or \
            results.load("runs", tmp_path)


def test_merge_adds_finished_runs_only(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    results.append("runs", runs_df("a"), dst)
    results.append("history", history_df("a"), dst)
    results.append("runs", runs_df("a", "b"), src)
    results.append("history", pd.concat([history_df("a", epochs=5), history_df("b", epochs=3),
                                         history_df("unfinished", epochs=2)]), src)
    results.append("pruning", pruning_df("b"), src)
    added = results.merge(src, dst)
    assert added == {"history": 3, "pruning": 2, "filters": 0, "runs": 1, "latency": 0}
    h = results.load("history", dst)
    assert sorted(h["run_id"].unique()) == ["a", "b"]          # "unfinished" left behind
    assert (h["run_id"] == "a").sum() == 2                      # a was done in dst: untouched
    assert results.merge(src, dst) == {"history": 0, "pruning": 0, "filters": 0, "runs": 0, "latency": 0}
    # a later pass in src over run a (finished in both): its new keys come along, once
    later = pruning_df("a", fractions=(0.3,)).assign(criterion="l1", notebook="data/runs/prune-again/x.ipynb")
    results.append("pruning", later, src, keyed=True)
    results.append("latency", latency_df("a"), src)
    results.append("latency", latency_df("unfinished"), src)
    assert results.merge(src, dst) == {"history": 0, "pruning": 1, "filters": 0, "runs": 0, "latency": 8}
    assert set(results.load("latency", dst)["run_id"]) == {"a"}
    assert results.merge(src, dst)["pruning"] == 0


def test_keyed_append_adds_new_keys_of_known_runs_and_skips_known_keys(tmp_path):
    assert results.append("pruning", pruning_df(), tmp_path) == 2
    # a later pass: the same run pruned by another criterion, plus one row already there
    later = pruning_df(fractions=(0.0, 0.5, 0.7))
    later.loc[later["fraction"] > 0, "criterion"] = "l1"
    later = pd.concat([later, pruning_df(fractions=(0.0,))], ignore_index=True)
    later = later.drop_duplicates(["criterion", "fraction"])
    assert results.append("pruning", later, tmp_path) == 0          # run-level: the run is known
    assert results.append("pruning", later, tmp_path, keyed=True) == 2
    back = results.load("pruning", tmp_path)
    assert sorted(zip(back["criterion"], back["fraction"])) == [("l1", 0.5), ("l1", 0.7), ("l2", 0.0), ("l2", 0.5)]
    assert results.append("pruning", later, tmp_path, keyed=True) == 0  # idempotent
    with pytest.raises(ValueError, match="replace=True and keyed=True"):
        results.append("pruning", later, tmp_path, keyed=True, replace=True)


def test_latency_rows_are_checked():
    bad = latency_df()
    bad.loc[0, "runtime"] = "tensorrt"
    with pytest.raises(ValueError, match="tensorrt"):
        results.validate("latency", bad)
    bad = latency_df()
    bad.loc[1, "latency_ms"] = 0.0
    with pytest.raises(ValueError, match="latency_ms"):
        results.validate("latency", bad)


def test_pruning_tables_written_before_the_notebook_column_still_load(tmp_path):
    old = pruning_df().drop(columns=["notebook"])
    results.atomic_write_csv(results.path("pruning", tmp_path), old)
    back = results.load("pruning", tmp_path)
    assert list(back.columns) == list(results.PRUNING_SCHEMA)
    assert (back["notebook"].fillna("") == "").all()


# --------------------------------------------------------------------------- the compressed table
def test_filters_table_is_gzip_and_reproducible(tmp_path):
    import gzip
    assert results.path("filters", tmp_path).name == "filters.csv.gz"
    assert results.path("runs", tmp_path).name == "runs.csv"
    results.append("filters", filters_df("a"), tmp_path)
    p = results.path("filters", tmp_path)
    text = gzip.decompress(p.read_bytes()).decode()
    assert text.startswith("run_id,layer,filter,norm,gamma,beta,bn_mean,bn_var\n") and text.endswith("\n")
    assert p.read_bytes()[4:8] == b"\x00\x00\x00\x00"          # gzip mtime field: 0
    # equal tables give equal bytes, whenever and wherever they are written
    other = tmp_path / "again"
    results.append("filters", filters_df("a"), other)
    assert results.path("filters", other).read_bytes() == p.read_bytes()
    pd.testing.assert_frame_equal(results.load("filters", tmp_path), results.load("filters", other))
    # and pandas reads the file as it is
    assert list(pd.read_csv(p)["run_id"].unique()) == ["a"]


def test_plain_filters_table_of_an_older_version_is_read_then_replaced(tmp_path):
    legacy = tmp_path / "filters.csv"
    results.atomic_write_csv(legacy, results._format_for_csv("filters", results.validate("filters", filters_df("a"))))
    assert list(results.load("filters", tmp_path)["run_id"].unique()) == ["a"]
    assert results.append("filters", filters_df("b"), tmp_path) == len(filters_df("b"))
    assert not legacy.exists()                       # its rows moved into the compressed table
    assert sorted(results.load("filters", tmp_path)["run_id"].unique()) == ["a", "b"]


@pytest.mark.parametrize("cut", ["stream", "line"])
def test_cut_gzip_table_is_refused_and_left_alone(tmp_path, cut):
    import gzip
    results.append("filters", filters_df("a"), tmp_path)
    p = results.path("filters", tmp_path)
    if cut == "stream":
        p.write_bytes(p.read_bytes()[:-12])
        message = "not a complete gzip file"
    else:
        text = gzip.decompress(p.read_bytes())
        p.write_bytes(gzip.compress(text[:-5]))
        message = r"line \d+: the last line is incomplete"
    before = p.read_bytes()
    with pytest.raises(ValueError, match=message) as err:
        results.load("filters", tmp_path)
    assert str(p) in str(err.value)
    with pytest.raises(ValueError, match=message):
        results.append("filters", filters_df("b"), tmp_path)
    assert p.read_bytes() == before


def test_a_row_with_an_extra_field_is_named_not_shifted(tmp_path):
    """pandas would take the first value of such a row for an index and read every column
    from its neighbour ("column 'model': unknown name 'bridgeout'"): refused as what it is."""
    results.append("runs", runs_df("a", "b"), tmp_path)
    p = results.path("runs", tmp_path)
    lines = p.read_text().splitlines()
    lines[1] += ",stray"
    p.write_text("\n".join(lines) + "\n")
    before = p.read_bytes()
    with pytest.raises(ValueError, match=r"a row has more fields than the header names"):
        results.load("runs", tmp_path)
    assert p.read_bytes() == before


def test_an_infinite_value_is_outside_every_half_open_range(tmp_path):
    with pytest.raises(ValueError, match=r"column 'wall_time_s': value inf out of range; allowed \[0.0, inf\)"):
        results.append("runs", runs_df("a", wall_time_s=math.inf), tmp_path)
    assert not results.path("runs", tmp_path).exists()
