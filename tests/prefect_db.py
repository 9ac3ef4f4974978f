"""A migrated Prefect database to start test servers from.

A server started on an empty PREFECT_HOME first runs Prefect's database migrations: ~7 of its ~12 s start-up on
two busy cores. Tests that start servers of their own (subprocess runs, a served deployment) copy this database,
migrated once per test session, into their fresh home instead; the server then finds it up to date.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

_MIGRATE = (
    "import asyncio\n"
    "from prefect.server.database import provide_database_interface\n"
    "asyncio.run(provide_database_interface().create_db())\n"
)
_template: Path | None = None


def _migrated_template() -> Path:
    global _template
    if _template is None:
        home = Path(tempfile.mkdtemp(prefix="e2ep-prefect-template-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
        env["PREFECT_HOME"] = str(home)
        subprocess.run([sys.executable, "-c", _MIGRATE], env=env, check=True, timeout=300, stdout=subprocess.DEVNULL)
        database = home / "prefect.db"
        with sqlite3.connect(database) as db:  # fold the write-ahead log in: the copy is the one file
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _template = database
    return _template


def seed_prefect_home(prefect_home: Path) -> None:
    """Give a new PREFECT_HOME an already migrated, empty database (a home with a database keeps it)."""
    target = Path(prefect_home) / "prefect.db"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_migrated_template(), target)
