"""The prediction record: add, list (newest first, paging, task filter), get, persistence, errors, threads."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
from sqlalchemy import inspect

from breastdx.serve.db import DatabaseError, PredictionStore, redact_url


def _sha(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def _add(store: PredictionStore, i: int, task: str = "busi-cls", **extra):
    fields = dict(task=task, model_name="busi-cls", model_version="abc123def456", input_sha256=_sha(i),
                  input_name=f"case-{i}.png", label="benign", elapsed_ms=12.5 + i,
                  result={"classification": {"probabilities": {"benign": 0.7, "malignant": 0.3}}, "i": i})
    fields.update(extra)
    return store.add(**fields)


def test_round_trip_and_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'p.sqlite'}"
    store = PredictionStore(url)
    entry = _add(store, 1)
    assert entry.id == 1 and entry.created_at.tzinfo is not None
    got = store.get(entry.id)
    assert got == entry
    assert got.result["classification"]["probabilities"]["malignant"] == 0.3
    columns = {c["name"] for c in inspect(store.engine).get_columns("predictions")}
    assert columns == {"id", "created_at", "task", "model_name", "model_version", "input_sha256", "input_name",
                       "label", "elapsed_ms", "result", "token_name"}
    assert store.get(999) is None
    store.close()
    reopened = PredictionStore(url)  # the file keeps the record
    total, items = reopened.list()
    assert total == 1 and items[0] == entry
    reopened.close()


def test_list_is_newest_first_with_paging_and_filter():
    store = PredictionStore("sqlite://")
    for i in range(7):
        _add(store, i, task="wdbc" if i % 2 else "busi-cls")
    total, items = store.list(limit=3)
    assert total == 7 and [e.result["i"] for e in items] == [6, 5, 4]
    _, items = store.list(limit=3, offset=5)
    assert [e.result["i"] for e in items] == [1, 0]
    total, items = store.list(task="wdbc")
    assert total == 3 and {e.task for e in items} == {"wdbc"}
    with pytest.raises(ValueError, match="limit must be at least 1, got 0"):
        store.list(limit=0)
    with pytest.raises(ValueError, match="offset must be at least 0"):
        store.list(offset=-1)


def test_timestamps_are_utc():
    store = PredictionStore("sqlite://")
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    entry = _add(store, 1, created_at=when)
    assert store.get(entry.id).created_at == when
    assert entry.to_dict()["created_at"] == "2026-01-02T03:04:05+00:00"


def test_bad_values_are_refused_or_cut():
    store = PredictionStore("sqlite://")
    with pytest.raises(ValueError, match="64 lower-case hexadecimal digits"):
        _add(store, 1, input_sha256="xyz")
    entry = _add(store, 2, input_name="n" * 400, label=None)
    assert len(entry.input_name) == 255 and entry.label is None


def test_bad_urls_say_what_is_wrong(tmp_path):
    with pytest.raises(DatabaseError, match="not valid"):
        PredictionStore("::not a url::")
    with pytest.raises(DatabaseError, match="Cannot use the database"):
        PredictionStore("postgresql+nosuchdriver://user:secret@localhost/db")
    with pytest.raises(DatabaseError) as info:
        PredictionStore("postgresql+nosuchdriver://user:secret@localhost/db")
    assert "secret" not in str(info.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatabaseError, match="Cannot open the prediction database"):
        PredictionStore(f"sqlite:///{tmp_path / 'file' / 'p.sqlite'}")  # a file where a folder should be


def test_redact_url_hides_the_password():
    url = "postgresql+psycopg://me:pw@db.example/breastdx"
    assert redact_url(url) == "postgresql+psycopg://me:***@db.example/breastdx"


@pytest.mark.parametrize("url_kind", ["memory", "file"])
def test_concurrent_writers(tmp_path, url_kind):
    url = "sqlite://" if url_kind == "memory" else f"sqlite:///{tmp_path / 'p.sqlite'}"
    store = PredictionStore(url)
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: _add(store, i).id, range(80)))
    assert sorted(ids) == list(range(1, 81))
    assert store.list(limit=500)[0] == 80
    store.close()
