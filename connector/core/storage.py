"""The databases of the connector's state: an engine from a URL, and its schema brought to the code's head at start.

Two backends behind SQLAlchemy Core: a SQLite file in the state directory (the embedded default, one replica) and
PostgreSQL through psycopg 3 (several replicas sharing one database). Stores write portable Core statements; what
differs is here: SQLite's write transactions are ``BEGIN IMMEDIATE`` (one writer at a time, taken at the start
rather than at the first write, so a read-then-write never deadlocks), PostgreSQL's are READ COMMITTED, where a
store that claims work locks rows with ``SELECT ... FOR UPDATE SKIP LOCKED``.

The schema is Alembic's (``connector/core/migrations/``). Each store
is one branch of that history (``queue``: the action queue). ``migrate`` runs at start under a lock (PostgreSQL's
advisory lock, SQLite's write lock), so replicas starting together upgrade one at a time, and refuses a database
whose revision this code does not know: a newer release migrated it, and running older code on it would corrupt it.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from pydantic import AfterValidator, SecretStr
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from connector.core.errors import ConfigError
from connector.core.resources import migrations_dir

log = logging.getLogger(__name__)

_DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}
_MIGRATION_LOCK = 0x706F7374_65726E  # pg_advisory_xact_lock key of schema upgrades ("postern")
READ_ONLY = "postern_read_only"  # an execution option: a SQLite connection that only reads takes no write lock


def _check_url(value: str) -> str:
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(f"not a database URL: {value!r} (e.g. postgresql+psycopg://postern@db.internal:5432/postern)"
                         ) from None
    backend, _, driver = url.drivername.partition("+")
    if backend not in _DRIVERS or driver not in ("", _DRIVERS[backend]):
        raise ValueError(f"database {url.drivername!r} is not supported: use postgresql+psycopg:// (or sqlite:///PATH)")
    if url.password is not None:
        raise ValueError("the URL carries a password: give it as password: {env: NAME} or {file: PATH} instead")
    return url.set(drivername=f"{backend}+{_DRIVERS[backend]}").render_as_string(hide_password=False)


DatabaseUrl = Annotated[str, AfterValidator(_check_url)]
"""``postgresql+psycopg://user@host:port/db`` (``postgresql://`` means the same) or ``sqlite:///PATH``; no password."""


def open_engine(where: Path | str, password: SecretStr | None = None) -> Engine:
    """A SQLite file (a path) or the database of a URL; nothing is connected yet."""
    if isinstance(where, Path):
        url = URL.create("sqlite+pysqlite", database=str(where))
    else:
        url = make_url(_check_url(where))
        if password is not None:
            url = url.set(password=password.get_secret_value())
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=5, max_overflow=20)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10,
                         connect_args={"connect_timeout": 10, "application_name": "postern"})


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # the driver's own BEGIN is off: _sqlite_begin says which one
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        dbapi_connection.execute(f"PRAGMA {pragma}")


def _sqlite_begin(connection: Connection) -> None:
    if not connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    # a reader runs each statement on its own (autocommit), as a WAL reader never blocks the writer


def reader(engine: Engine) -> Engine:
    """The same database for statements that only read: no write lock on SQLite, autocommit on PostgreSQL."""
    if is_postgresql(engine):
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine.execution_options(**{READ_ONLY: True})


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def describe(engine: Engine) -> str:
    """Where the data is, for messages: the file, or the URL without its password."""
    if engine.dialect.name == "sqlite":
        return str(engine.url.database)
    return engine.url.render_as_string(hide_password=True)


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(migrations_dir()))


def head(branch: str) -> str:
    """The newest revision of ``branch`` this code knows."""
    try:
        script = _scripts().get_revision(f"{branch}@head")
    except CommandError as exc:
        raise ConfigError(f"no migration history for {branch!r} in {migrations_dir()}: {exc}") from None
    if script is None:
        raise ConfigError(f"no migration history for {branch!r} in {migrations_dir()}")
    return script.revision


def migrate(engine: Engine, branch: str, what: str) -> None:
    """Bring ``branch``'s tables to this code's head, or refuse a database that a newer release has migrated.

    ``what`` names the store in errors (``action queue``).
    """
    scripts = _scripts()
    where = describe(engine)
    try:
        with engine.begin() as connection:  # SQLite: BEGIN IMMEDIATE, the other processes wait
            if is_postgresql(engine):
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            current = MigrationContext.configure(connection).get_current_heads()
            for revision in current:
                try:
                    scripts.get_revision(revision)
                except CommandError:
                    raise ConfigError(
                        f"{what} {where}: the database's schema is at revision {revision!r}, which this connector "
                        f"does not know (it knows up to {head(branch)!r}): a newer release migrated it; run that "
                        f"release, or a copy of the data made before the upgrade") from None
            config = Config()
            config.set_main_option("script_location", str(migrations_dir()))
            config.attributes["connection"] = connection
            target = head(branch)
            if target not in current:
                command.upgrade(config, f"{branch}@head")
                log.info("%s %s: schema upgraded to %s", what, where, target,
                         extra={"from_revision": ",".join(current) or None, "to_revision": target})
    except SQLAlchemyError as exc:
        raise ConfigError(f"{what} {where}: {_reason(exc)}") from None


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's message without SQLAlchemy's statement dump and help link."""
    message = str(getattr(exc, "orig", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__
