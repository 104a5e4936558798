"""Alembic migrations of the prediction record (``alembic_version`` table); run by
:func:`breastdx.serve.db.migrate`, on SQLite and PostgreSQL alike. A change of the schema in ``db.py`` comes with
a new file in ``versions/``."""
