"""``breastdx token create|list|revoke``: the API tokens of the service, kept as SHA-256 hashes in its prediction
database (:class:`breastdx.serve.db.PredictionStore`)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

import typer
from rich.table import Table

from breastdx.cli_output import console, fail

DATABASE_HELP = ("SQLAlchemy URL of the prediction record and the API tokens, e.g. "
                 "postgresql+psycopg://user@host/db; default a SQLite file in ~/.local/share/breastdx.")

token_app = typer.Typer(help="API tokens of the service: create, list, revoke (stored as SHA-256 hashes in the "
                             "prediction database).", no_args_is_help=True)


@contextmanager
def _token_store(database_url: Optional[str], existing: bool = False) -> Iterator[Any]:
    """The prediction database for a token command: closed at the end; its errors (and a bad or unknown
    name) end the command with the message. With ``existing`` (list, revoke), a SQLite file that does not exist is
    refused rather than created: a mistyped path would otherwise list no token, as if there were none."""
    from breastdx.serve.db import DatabaseError, PredictionStore
    from breastdx.serve.settings import default_database_url

    try:
        store = PredictionStore(database_url or default_database_url(), create=not existing)
    except DatabaseError as e:
        fail(str(e))
    try:
        yield store
    except KeyError as e:
        fail(str(e.args[0]))
    except (ValueError, DatabaseError) as e:
        fail(str(e))
    finally:
        store.close()


@token_app.command("create")
def token_create(
    name: str = typer.Argument(..., help="Who or what the token is for; recorded with each prediction it asks."),
    database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_HELP),
) -> None:
    """Make a new API token and print it once, as the last line (only its hash is kept)."""
    from breastdx.serve.db import redact_url

    with _token_store(database_url) as store:
        token = store.create_token(name)
    console.print(f"API token {name!r} created in {redact_url(store.url)}. It is shown once, now; keep it secret "
                  f"and send it as 'Authorization: Bearer TOKEN'.", highlight=False, soft_wrap=True)
    print(token)


@token_app.command("list")
def token_list(database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_HELP)) -> None:
    """List the API tokens: name, created, revoked (never the tokens)."""
    with _token_store(database_url, existing=True) as store:
        tokens = store.list_tokens()
    table = Table(title=f"API tokens ({len(tokens)})")
    for column in ("name", "created (UTC)", "revoked (UTC)"):
        table.add_column(column)
    for t in tokens:
        table.add_row(t.name, f"{t.created_at:%Y-%m-%d %H:%M:%S}",
                      f"{t.revoked_at:%Y-%m-%d %H:%M:%S}" if t.revoked_at else "")
    console.print(table)


@token_app.command("revoke")
def token_revoke(
    name: str = typer.Argument(..., help="The token's name (token list shows them)."),
    database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_HELP),
) -> None:
    """Revoke an API token: every worker refuses it from its next request on."""
    from datetime import datetime, timedelta, timezone

    with _token_store(database_url, existing=True) as store:  # (a database may keep whole seconds)
        asked, info = datetime.now(timezone.utc) - timedelta(seconds=1), store.revoke_token(name)
    console.print(f"API token {info.name!r} {'was revoked already' if info.revoked_at < asked else 'revoked'} at "
                  f"{info.revoked_at:%Y-%m-%d %H:%M:%S} UTC.", highlight=False)
