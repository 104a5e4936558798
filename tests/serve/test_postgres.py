"""The prediction record, the API tokens and the listing on a real PostgreSQL server.

The server is Debian's ``postgresql`` package (installed by ``make test``, as chromium is), started by the
fixture in a temporary folder with a Unix socket only and stopped at the end. As root it runs as the
``postgres`` user, since PostgreSQL refuses to run as root. Without the package the tests are skipped,
saying why; under CI (``$CI`` set) they fail instead, because ``make test`` should have installed it.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from breastdx.serve.db import PredictionStore


def _bin_dir() -> Path | None:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if Path(d, "initdb").is_file() and Path(d, "pg_ctl").is_file():
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


@pytest.fixture(scope="module")
def pg_server():
    """``(admin URL prefix, make_database(name) -> SQLAlchemy URL)`` of a PostgreSQL server of our own."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        message = "PostgreSQL is not installed (apt-get install -y postgresql; `make test` installs it as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    base = Path(tempfile.mkdtemp(prefix="breastdx-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        shutil.chown(base, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", 5400 + os.getpid() % 500
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)  # noqa: E731
    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60", "-o",
            f"-c listen_addresses='' -k {base} -p {port} -c fsync=off", "start")
    except subprocess.CalledProcessError as e:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {e.stderr.decode(errors='replace')[-1500:]} {log[-1500:]}")

    def make_database(name: str) -> str:
        admin = create_engine(f"postgresql+psycopg://postgres@/postgres?host={base}&port={port}",
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return f"postgresql+psycopg://postgres@/{name}?host={base}&port={port}"

    try:
        yield make_database
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def _sha(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def _add(store: PredictionStore, i: int, task: str = "busi-cls", token_name: str | None = None):
    return store.add(task=task, model_name="busi-cls", model_version="abc", input_sha256=_sha(i),
                     input_name=f"case-{i}.png", label="benign", elapsed_ms=1.5 + i,
                     result={"p": {"malignant": 0.25}, "i": i}, token_name=token_name)


def test_record_round_trip_paging_filter_and_threads(pg_server):
    url = pg_server("record")
    store = PredictionStore(url)
    assert store.engine.dialect.name == "postgresql"
    first = _add(store, 0)
    assert store.get(first.id) == first and first.created_at.tzinfo is not None
    assert store.get(2**63 - 1) is None
    with ThreadPoolExecutor(8) as pool:  # concurrent writers
        list(pool.map(lambda i: _add(store, i, task="wdbc" if i % 2 else "busi-cls"), range(1, 41)))
    total, items = store.list(limit=5)
    assert total == 41 and len(items) == 5 and items[0].id > items[-1].id
    total, items = store.list(limit=100, task="wdbc")
    assert total == 20 and {e.task for e in items} == {"wdbc"}
    assert sorted(e.result["i"] for e in store.list(limit=100)[1]) == list(range(41))
    _, page = store.list(limit=10, offset=35)
    assert [e.id for e in page] == sorted((e.id for e in page), reverse=True) and len(page) == 6
    store.close()
    reopened = PredictionStore(url)  # migrations at head: a second start changes nothing
    assert reopened.list()[0] == 41
    reopened.close()


def test_tokens_and_the_listing_through_the_api(pg_server, registry, synthetic_png):
    from fastapi.testclient import TestClient

    from breastdx.serve import ServeSettings, create_app

    url = pg_server("api")
    store = PredictionStore(url)
    token = store.create_token("pg-user")
    with pytest.raises(ValueError, match="exists already"):
        store.create_token("pg-user")
    with TestClient(create_app(ServeSettings(database_url=url, display_max_side=128, record_names=True), registry=registry)) as c:
        assert c.get("/v1/predictions").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        for i in range(3):
            r = c.post("/v1/predict/busi-cls", files={"file": (f"c{i}.png", synthetic_png, "image/png")}, headers=auth)
            assert r.status_code == 200, r.text
        listing = c.get("/v1/predictions", params={"limit": 2, "offset": 1}, headers=auth).json()
        assert listing["total"] == 3 and [e["input_name"] for e in listing["items"]] == ["c1.png", "c0.png"]
        assert {e["token_name"] for e in listing["items"]} == {"pg-user"}
        store.revoke_token("pg-user")
        assert c.get("/v1/predictions", headers=auth).status_code == 401
    assert [t.name for t in store.list_tokens()] == ["pg-user"] and store.list_tokens()[0].revoked_at is not None
    store.close()


def test_migrations_upgrade_an_old_postgres_database(pg_server):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from breastdx.serve.db import Base

    url = pg_server("old")
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("CREATE TABLE predictions (id SERIAL PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL, "
                       "task VARCHAR(32) NOT NULL, model_name VARCHAR(200) NOT NULL, model_version VARCHAR(200) "
                       "NOT NULL, input_sha256 VARCHAR(64) NOT NULL, input_name VARCHAR(255), label VARCHAR(64), "
                       "elapsed_ms FLOAT NOT NULL, result JSON NOT NULL)"))
        for column in ("created_at", "task", "input_sha256"):  # as create_all made them
            c.execute(text(f"CREATE INDEX ix_predictions_{column} ON predictions ({column})"))
        c.execute(text(f"INSERT INTO predictions (created_at, task, model_name, model_version, input_sha256, "
                       f"elapsed_ms, result) VALUES (now(), 'wdbc', 'm', 'v', '{_sha(7)}', 2.0, '{{}}')"))
    engine.dispose()
    store = PredictionStore(url)
    total, items = store.list()
    assert total == 1 and items[0].input_sha256 == _sha(7) and items[0].token_name is None
    assert {"api_tokens", "alembic_version"} <= set(inspect(store.engine).get_table_names())
    assert _add(store, 8, token_name="x").id == 2
    with store.engine.connect() as c:  # the upgraded schema is the schema of db.py, 64-bit ids included
        assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
        assert c.execute(text("SELECT data_type FROM information_schema.columns WHERE table_name = 'predictions' "
                              "AND column_name = 'id'")).scalar_one() == "bigint"
    store.close()


def test_two_workers_share_the_postgres_record(pg_server, model_dirs, cli_server, synthetic_png):
    import httpx

    url = pg_server("workers")
    store = PredictionStore(url)
    token = store.create_token("ward")
    base = cli_server(["--workers", "2", "--database-url", url, "--model", str(model_dirs["wdbc"]),
                       "--model", str(model_dirs["busi-cls"])])
    with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda i: client.post(
                "/v1/predict/busi-cls", files={"file": (f"w{i}.png", synthetic_png, "image/png")}).status_code,
                range(24)))
        assert codes == [200] * 24
        assert client.get("/v1/predictions").json()["total"] == 24
    assert store.list(limit=100)[0] == 24 and {e.token_name for e in store.list(limit=100)[1]} == {"ward"}
    store.close()
