"""Session fixtures shared by every test package; plain helpers live in tests/support/."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from connector.core.catalog import Catalog, load_catalog
from connector.core.model import Finding
from support.pki import Authority, Pki, self_signed
from support.postgres import Postgres, binaries, running_postgres
from support.scanning import run_scan
from support.sites import site
from support.smtp import Mailbox, smtp_server


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = Authority("Postern Test Root")
    intermediate = Authority("Postern Test Intermediate", root)
    stranger = Authority("Unknown Root")
    bundle = tmp_path_factory.mktemp("pki") / "roots.pem"
    bundle.write_bytes(root.pem())
    return Pki(root, intermediate, stranger, bundle)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def scanned(pki: Pki, catalog: Catalog) -> list[Finding]:
    """Findings of a real scan (a hardened site and a self-signed one): what the pipeline ships in tests."""
    with site("ship.test", pki.intermediate.issue(["ship.test"])) as good, \
            site("weak.ship.test", self_signed("weak.ship.test")) as weak:
        return run_scan([good.asset, weak.asset], catalog, ca_bundle=pki.bundle)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One throwaway PostgreSQL cluster for the session (tests/support/postgres.py); skipped where none is
    installed (tests/run installs Debian's postgresql package)."""
    if binaries() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    with running_postgres() as server:
        yield server


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL."""
    return postgres.url(postgres.new_database())


@pytest.fixture
def mailbox(pki: Pki, tmp_path: Path) -> Iterator[Mailbox]:
    """A real SMTP server (STARTTLS, then AUTH as postern / relay-password-123) that keeps what it receives."""
    with smtp_server(pki, tmp_path, "postern", "relay-password-123") as running:
        yield running
