"""Alembic migrations: a fresh database gets the newest schema, the migrations match the tables of db.py, and a
database made before migrations existed is upgraded in place with its rows kept."""

from __future__ import annotations

import hashlib

from sqlalchemy import create_engine, inspect, text

from breastdx.serve.db import Base, PredictionStore, migrate

OLD_SCHEMA = """
CREATE TABLE predictions (
    id INTEGER NOT NULL PRIMARY KEY, created_at DATETIME NOT NULL, task VARCHAR(32) NOT NULL,
    model_name VARCHAR(200) NOT NULL, model_version VARCHAR(200) NOT NULL, input_sha256 VARCHAR(64) NOT NULL,
    input_name VARCHAR(255), label VARCHAR(64), elapsed_ms FLOAT NOT NULL, result JSON NOT NULL)
"""


def _head(engine) -> str:
    with engine.connect() as c:
        return c.execute(text("SELECT version_num FROM alembic_version")).scalar_one()


def test_fresh_database_matches_the_models(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_engine(f"sqlite:///{tmp_path / 'fresh.sqlite'}")
    with engine.begin() as c:
        migrate(c)
    assert _head(engine) == "0002"
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    assert diff == [], diff
    with engine.begin() as c:  # a second run is a no-op
        migrate(c)
    assert _head(engine) == "0002"
    engine.dispose()


def test_database_from_before_migrations_is_upgraded_with_its_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = create_engine(url)
    sha = hashlib.sha256(b"old").hexdigest()
    with engine.begin() as c:
        c.execute(text(OLD_SCHEMA))
        c.execute(text("INSERT INTO predictions (created_at, task, model_name, model_version, input_sha256, "
                       "input_name, label, elapsed_ms, result) VALUES ('2026-01-02 03:04:05', 'wdbc', 'wdbc', "
                       f"'abc', '{sha}', 'case-1', 'benign', 3.5, '{{\"p\": 0.2}}')"))
    engine.dispose()
    store = PredictionStore(url)
    total, items = store.list()
    assert total == 1 and items[0].input_sha256 == sha and items[0].result == {"p": 0.2}
    assert items[0].token_name is None
    assert "token_name" in {c["name"] for c in inspect(store.engine).get_columns("predictions")}
    assert "api_tokens" in inspect(store.engine).get_table_names()
    assert _head(store.engine) == "0002"
    token = store.create_token("after-upgrade")
    entry = store.add(task="wdbc", model_name="m", model_version="v", input_sha256=sha, input_name=None,
                      label=None, elapsed_ms=1.0, result={}, token_name=store.token_owner(token))
    assert entry.id == 2 and entry.token_name == "after-upgrade"
    store.close()
