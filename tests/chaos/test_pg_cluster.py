"""The suite's own PostgreSQL cluster: a restart drops connections and keeps committed data."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.support.pg_cluster import owned_cluster

pytestmark = pytest.mark.integration


def test_restart_immediate_drops_connections_and_keeps_committed_rows(tmp_path: Path) -> None:
    with owned_cluster(tmp_path / "pg") as pg:
        url = pg.create_database(migrate=False).replace("+psycopg", "")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (v int)")
            conn.execute("INSERT INTO t VALUES (1)")
            held = psycopg.connect(url)
            pg.restart(down_s=0.5)
            with pytest.raises(psycopg.OperationalError):
                held.execute("SELECT 1")
            held.close()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT v FROM t").fetchall() == [(1,)]
        pg.stop()
        assert not pg.running() and not pg.accepts_connections()
        pg.start()
        assert pg.accepts_connections()
