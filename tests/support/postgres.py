"""A real PostgreSQL for tests: Debian's server binaries, a throwaway cluster on a free loopback port.

``initdb`` makes a cluster in a temporary directory whose superuser is ``postern`` with trust authentication on
127.0.0.1, except for the role ``secretive``, which must give its password (scram-sha-256): the tests of
``password: {env: ...}``. The socket directory is the temporary directory, so nothing touches /var/run/postgresql
or a system cluster. ``fsync`` is off: the cluster dies with the session.

PostgreSQL refuses to run as root, so as root (CI) the server runs as the ``postgres`` user that the Debian
package creates, through ``runuser``; as anyone else it runs as that user.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

SUPERUSER = "postern"
PASSWORD_USER, PASSWORD = "secretive", "correct horse battery staple"


def binaries() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin holding initdb (the package puts none on PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Postgres:
    bin: Path
    root: Path
    port: int
    _databases: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    def execute(self, *statements: str, database: str = "postgres") -> None:
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=database,
                             autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement.encode())

    def new_database(self) -> str:
        """A fresh, empty database: its name."""
        name = f"test_{next(self._databases)}"
        self.execute(f'CREATE DATABASE "{name}" OWNER {SUPERUSER}')
        self.execute(f"GRANT ALL ON SCHEMA public TO {PASSWORD_USER}", database=name)
        return name


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    pwd.getpwnam("postgres")  # KeyError: the Debian package's user is missing
    return ["runuser", "-u", "postgres", "--"]


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    bin_dir = binaries()
    if bin_dir is None:
        raise FileNotFoundError("no /usr/lib/postgresql/*/bin/initdb: apt-get install postgresql (tests/run does)")
    prefix = _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="postern-pg-"))
    if prefix:
        shutil.chown(root, "postgres", "postgres")
    server = Postgres(bin_dir, root, _free_port())
    subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(server.data), "-U", SUPERUSER, "-E", "UTF8",
                    "--auth=trust", "--no-sync", "--no-instructions"],
                   check=True, capture_output=True, timeout=120)
    hba = server.data / "pg_hba.conf"
    hba_text = (f"local all all trust\nhost all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
                "host all all 127.0.0.1/32 trust\n")
    subprocess.run([*prefix, "sh", "-c", f"printf '%s' '{hba_text}' > {hba}"], check=True, timeout=30)
    options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -c unix_socket_directories={root} "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
    try:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(server.data), "-l", str(root / "server.log"),
                        "-o", options, "-w", "-t", "60", "start"], check=True, capture_output=True, timeout=90)
        server.execute(f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'")
        yield server
    except subprocess.CalledProcessError as exc:
        log = root / "server.log"
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr!r}\n"
                           f"{log.read_text() if log.exists() else ''}") from None
    finally:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(server.data), "-m", "immediate", "-w", "stop"],
                       check=False, capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
