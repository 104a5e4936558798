"""The prediction record and the API tokens, through SQLAlchemy 2.0 (SQLite or PostgreSQL).

Every answered prediction is stored. Schema, table ``predictions``:

=============== ====================== ===============================================================
column          type                   meaning
=============== ====================== ===============================================================
id              integer, primary key   the prediction's number, given in the answer (``prediction_id``)
created_at      timestamp (UTC), index when the prediction was answered
task            varchar(32), index     ``wdbc``, ``busi-seg``, ``busi-cls``, ``ultrasound``, ...
model_name      varchar(200)           the model(s) used; ``+`` joins several (the ultrasound endpoint)
model_version   varchar(200)           their versions, in the same order, joined by ``+``
input_sha256    char(64), index        SHA-256 of the uploaded file's bytes, or of the WDBC features
input_name      varchar(255), null     the uploaded file's name or the WDBC case id; null unless --record-names
label           varchar(64), null      the label at the operating point (classification), else null
elapsed_ms      float                  time taken by the server, from the received input to the answer
result          JSON                   the answer without its images (probabilities, threshold, area, notes, ...)
token_name      varchar(64), null      the API token that asked (its name); null with ``--no-auth``
=============== ====================== ===============================================================

Table ``api_tokens``: ``id``, ``name`` (unique), ``token_sha256`` (unique; the token itself is never stored),
``created_at``, ``revoked_at`` (null while valid).

The schema is made and upgraded by Alembic (:func:`migrate`, files in ``serve/migrations/versions``); a
database made before migrations existed is recognised and upgraded in place.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, BigInteger, DateTime, Float, Integer, String, create_engine, event, func, inspect, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)


class DatabaseError(RuntimeError):
    """The prediction record cannot be opened, written or read; the message names the database and the cause.

    The message is for the administrator (the log, the command line): a client is told only
    :func:`unavailable_message`.
    """


def unavailable_message(failed: str, consequence: str = "") -> str:
    """What a client is told when the database fails: what was not done (``failed``, then ``consequence``), never
    which database or why, since its URL names the host and the user and the driver's message may too; those are
    logged for the administrator."""
    return (f"{failed}: the service cannot use its database (the cause is logged). {consequence}"
            f"Try again later, or tell the administrator.")


INPUT_NAME_LENGTH = 255
"""Longest ``input_name`` kept (a file name or case id); a longer one is cut, in the answer as in the record."""

ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")
"""Row ids: 64-bit (PostgreSQL BIGINT); SQLite's INTEGER PRIMARY KEY is 64-bit already (and must be INTEGER)."""


class Base(DeclarativeBase):
    """Declarative base of the service's tables."""


class PredictionRow(Base):
    """One recorded prediction (see the module docstring for the columns)."""

    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    task: Mapped[str] = mapped_column(String(32), index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(200))
    input_sha256: Mapped[str] = mapped_column(String(64), index=True)
    input_name: Mapped[str | None] = mapped_column(String(INPUT_NAME_LENGTH), nullable=True)
    label: Mapped[str | None] = mapped_column(String(64), nullable=True)
    elapsed_ms: Mapped[float] = mapped_column(Float)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    token_name: Mapped[str | None] = mapped_column(String(64), nullable=True)


class TokenRow(Base):
    """One API token: its name and the SHA-256 of the token (see the module docstring)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
"""A token's name: 1 to 64 letters, digits and ``._@-``, starting with a letter or digit."""


class TokenInfo(BaseModel):
    """An API token as listed (never the token itself).

    Attributes:
        name: Its name.
        created_at: When it was made (UTC).
        revoked_at: When it was revoked (UTC), or None while valid.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    created_at: datetime
    revoked_at: datetime | None = None


def token_sha256(token: str) -> str:
    """The SHA-256 (hex) under which a token is stored. A token is 256 random bits, so a fast hash suffices."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite stores naive timestamps; they were written in UTC
        return value.replace(tzinfo=timezone.utc)
    return value


def migrate(connection: Connection) -> None:
    """Create or upgrade the schema to the newest revision (Alembic), in the connection's transaction.

    A database made by ``create_all`` before migrations existed (a ``predictions`` table and no
    ``alembic_version``) is stamped with revision ``0001`` first, so its rows are kept.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: If the database cannot be read or altered.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    config.attributes["connection"] = connection
    tables = set(inspect(connection).get_table_names())
    if "predictions" in tables and "alembic_version" not in tables:
        command.stamp(config, "0001")
    command.upgrade(config, "head")


class PredictionEntry(BaseModel):
    """A recorded prediction, detached from the database session (also the API's view of it).

    Attributes:
        id: Its number.
        created_at: When it was answered (UTC, timezone-aware).
        task: The task.
        model_name: Model name(s), ``+``-joined.
        model_version: Model version(s), ``+``-joined.
        input_sha256: SHA-256 of the input.
        input_name: The file name or case id the client gave, or None.
        label: The label at the operating point, or None.
        elapsed_ms: Server time taken, in milliseconds.
        result: The answer without images.
        token_name: The name of the API token that asked, or None (``--no-auth``).
    """

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    id: int
    created_at: datetime
    task: str
    model_name: str
    model_version: str
    input_sha256: str
    input_name: str | None = None
    label: str | None = None
    elapsed_ms: float
    result: dict[str, Any] = Field(description="The answer without its images.")
    token_name: str | None = Field(default=None, description="The API token that asked (its name).")

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON-ready values (``created_at`` in ISO 8601)."""
        return {**self.model_dump(), "created_at": self.created_at.isoformat()}


def _entry(row: PredictionRow) -> PredictionEntry:
    return PredictionEntry(id=row.id, created_at=_utc(row.created_at), task=row.task, model_name=row.model_name,
                           model_version=row.model_version, input_sha256=row.input_sha256, input_name=row.input_name,
                           label=row.label, elapsed_ms=float(row.elapsed_ms), result=dict(row.result or {}),
                           token_name=row.token_name)


def _clip(text: str | None, length: int) -> str | None:
    return None if text is None else str(text)[:length]


def redact_url(url: str) -> str:
    """The database URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(unparsable database URL)"


class PredictionStore:
    """Records predictions and lists them.

    Args:
        url: SQLAlchemy database URL. ``sqlite://`` (or ``sqlite:///:memory:``) keeps the record in memory;
            ``sqlite:///path/file.sqlite`` creates the folder when missing.
        create: Create a SQLite file that does not exist; False to refuse it (``token list``/``revoke``: a
            mistyped path would otherwise give an empty database, as if there were no token).

    Raises:
        DatabaseError: If the URL is malformed, its driver is not installed, the database cannot be reached or
            its table created, or (``create`` False) its SQLite file does not exist.
    """

    def __init__(self, url: str, create: bool = True) -> None:
        self.url = url
        self.engine = self._create_engine(url, create)
        # An in-memory SQLite database is one connection shared by every thread: use it one at a time.
        self._lock: Any = threading.Lock() if isinstance(self.engine.pool, StaticPool) else nullcontext()
        try:
            with self._lock, self.engine.begin() as connection:
                migrate(connection)
        except SQLAlchemyError as e:
            self.engine.dispose()
            raise DatabaseError(f"Cannot open the prediction database {redact_url(url)}: "
                                f"{type(e).__name__}: {e.args[0] if e.args else e}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @staticmethod
    def _create_engine(url: str, create: bool = True) -> Engine:
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError):  # ValueError: a port that is not a number
            # the URL may hold a password, and the service's console and log are no place for it
            scheme = url.split("://", 1)[0] if "://" in url else None
            raise DatabaseError(f"Database URL is not valid ({f'scheme {scheme!r}' if scheme else 'no ://'}; the URL is "
                                f"not repeated here, as it may hold a password); expected e.g. "
                                f"sqlite:///predictions.sqlite or postgresql+psycopg://user@host/db.") from None
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False}
            database = parsed.database
            if not database or database == ":memory:":
                kwargs["poolclass"] = StaticPool  # one shared in-memory database for every thread
            else:
                if not create and not Path(database).expanduser().is_file():
                    raise DatabaseError(f"No prediction database at {Path(database).expanduser()} ({url}): check "
                                        f"the path; 'breastdx token create' or 'breastdx serve' makes one.")
                folder = Path(database).expanduser().parent
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise DatabaseError(f"Cannot open the prediction database {url}: cannot create its folder "
                                        f"{folder} ({e.strerror or e}).") from None
        try:
            engine = create_engine(parsed, **kwargs)
        except (ArgumentError, ImportError) as e:
            raise DatabaseError(f"Cannot use the database {redact_url(url)}: {type(e).__name__}: {e}. For PostgreSQL, "
                                f"install a driver (pip install 'psycopg[binary]').") from None
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")  # readers do not wait for the writer
                cursor.execute("PRAGMA busy_timeout=10000")
                cursor.close()
        return engine

    def add(self, *, task: str, model_name: str, model_version: str, input_sha256: str, input_name: str | None,
            label: str | None, elapsed_ms: float, result: dict[str, Any],
            created_at: datetime | None = None, token_name: str | None = None) -> PredictionEntry:
        """Record one prediction.

        Args:
            task: The task.
            model_name: Model name(s), ``+``-joined.
            model_version: Model version(s), ``+``-joined.
            input_sha256: SHA-256 of the input, 64 hexadecimal digits.
            input_name: File name or case id from the client, or None (cut to 255 characters).
            label: The label at the operating point, or None.
            elapsed_ms: Server time taken, in milliseconds.
            result: The answer without images (JSON-serialisable).
            created_at: When; default now (UTC).
            token_name: The name of the API token that asked, or None.

        Returns:
            The recorded entry, with its id.

        Raises:
            ValueError: If ``input_sha256`` is not 64 hexadecimal digits.
            DatabaseError: If the database cannot be written.
        """
        if len(input_sha256) != 64 or any(c not in "0123456789abcdef" for c in input_sha256):
            raise ValueError(f"input_sha256 must be 64 lower-case hexadecimal digits, got {input_sha256!r}.")
        row = PredictionRow(created_at=created_at or datetime.now(timezone.utc), task=_clip(task, 32),
                            model_name=_clip(model_name, 200), model_version=_clip(model_version, 200),
                            input_sha256=input_sha256, input_name=_clip(input_name, INPUT_NAME_LENGTH),
                            label=_clip(label, 64), elapsed_ms=float(elapsed_ms), result=result,
                            token_name=_clip(token_name, 64))
        try:
            with self._lock, self._sessions.begin() as session:
                session.add(row)
                session.flush()
                return _entry(row)
        except SQLAlchemyError as e:
            raise DatabaseError(f"Cannot record the prediction in {redact_url(self.url)}: {type(e).__name__}: "
                                f"{e.args[0] if e.args else e}") from None

    def list(self, limit: int = 50, offset: int = 0, task: str | None = None) -> tuple[int, list[PredictionEntry]]:
        """Recorded predictions, newest first.

        Args:
            limit: Most entries returned (>= 1).
            offset: Entries skipped from the newest (>= 0).
            task: Only this task, or every task.

        Returns:
            ``(total number of matching entries, entries)``.

        Raises:
            ValueError: If ``limit`` < 1 or ``offset`` < 0.
            DatabaseError: If the database cannot be read.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}.")
        if offset < 0:
            raise ValueError(f"offset must be at least 0, got {offset}.")
        query = select(PredictionRow)
        count = select(func.count()).select_from(PredictionRow)
        if task is not None:
            query = query.where(PredictionRow.task == task)
            count = count.where(PredictionRow.task == task)
        try:
            with self._lock, Session(self.engine) as session:
                total = int(session.scalar(count) or 0)
                rows = session.scalars(query.order_by(PredictionRow.id.desc()).limit(limit).offset(offset)).all()
                return total, [_entry(r) for r in rows]
        except SQLAlchemyError as e:
            raise DatabaseError(f"Cannot read the predictions from {redact_url(self.url)}: {type(e).__name__}: "
                                f"{e.args[0] if e.args else e}") from None

    def get(self, prediction_id: int) -> PredictionEntry | None:
        """The entry with this id, or None.

        Raises:
            DatabaseError: If the database cannot be read.
        """
        try:
            with self._lock, Session(self.engine) as session:
                row = session.get(PredictionRow, int(prediction_id))
                return _entry(row) if row is not None else None
        except SQLAlchemyError as e:
            raise DatabaseError(f"Cannot read prediction {prediction_id} from {redact_url(self.url)}: "
                                f"{type(e).__name__}: {e.args[0] if e.args else e}") from None

    # ------------------------------------------------------------------------------------------ API tokens
    def _tokens(self, what: str, work: Any) -> Any:
        try:
            with self._lock, self._sessions.begin() as session:
                return work(session)
        except SQLAlchemyError as e:
            raise DatabaseError(f"Cannot {what} in {redact_url(self.url)}: {type(e).__name__}: "
                                f"{e.args[0] if e.args else e}") from None

    def create_token(self, name: str) -> str:
        """Make a new API token; only its SHA-256 is stored, so the returned token cannot be shown again.

        Args:
            name: Who or what the token is for (:data:`TOKEN_NAME`); recorded with each prediction it asks for.

        Returns:
            The token: 43 URL-safe characters (256 random bits).

        Raises:
            ValueError: If the name is malformed or a token of that name exists (revoked ones included).
            DatabaseError: If the database cannot be written.
        """
        if not TOKEN_NAME.fullmatch(name or ""):
            raise ValueError(f"Token name {name!r} is not valid: use 1 to 64 letters, digits and . _ @ -, starting "
                             f"with a letter or digit.")
        token = secrets.token_urlsafe(32)

        def work(session: Session) -> None:
            existing = session.scalar(select(TokenRow).where(TokenRow.name == name))
            if existing is not None:  # names stay with their token, revoked or not: records refer to them
                raise ValueError(f"A token named {name!r} exists already"
                                 + (" (revoked: a name is never given to another token, since the records name it)"
                                    if existing.revoked_at is not None else " (token list shows it)")
                                 + "; choose another name.")
            session.add(TokenRow(name=name, token_sha256=token_sha256(token), created_at=datetime.now(timezone.utc)))

        self._tokens(f"create token {name!r}", work)
        return token

    def list_tokens(self) -> list[TokenInfo]:
        """Every token, oldest first (names and dates, never the tokens).

        Raises:
            DatabaseError: If the database cannot be read.
        """
        return self._tokens("list the tokens", lambda session: [
            TokenInfo(name=r.name, created_at=_utc(r.created_at), revoked_at=_utc(r.revoked_at))
            for r in session.scalars(select(TokenRow).order_by(TokenRow.id))])

    def revoke_token(self, name: str) -> TokenInfo:
        """Revoke a token: it is refused from now on (by every worker, at its next request).

        Returns:
            The token as listed, with its ``revoked_at``.

        Raises:
            KeyError: If no token has this name.
            DatabaseError: If the database cannot be written.
        """
        def work(session: Session) -> TokenInfo:
            row = session.scalar(select(TokenRow).where(TokenRow.name == name))
            if row is None:
                raise KeyError(f"No token is named {name!r}; token list shows the names.")
            if row.revoked_at is None:
                row.revoked_at = datetime.now(timezone.utc)
            return TokenInfo(name=row.name, created_at=_utc(row.created_at), revoked_at=_utc(row.revoked_at))

        return self._tokens(f"revoke token {name!r}", work)

    def token_owner(self, token: str) -> str | None:
        """The name of a valid (not revoked) token, or None for an unknown or revoked one.

        Raises:
            DatabaseError: If the database cannot be read.
        """
        digest = token_sha256(token)
        return self._tokens("check a token", lambda session: session.scalar(
            select(TokenRow.name).where(TokenRow.token_sha256 == digest, TokenRow.revoked_at.is_(None))))

    def close(self) -> None:
        """Close every connection."""
        self.engine.dispose()
