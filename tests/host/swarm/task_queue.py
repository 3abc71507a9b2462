"""The host's task queue: its own table in the same SQLite file as the event log."""

import sqlite3
import uuid
from pathlib import Path

DB_PATH = Path("data/swarm.db")


def _conn() -> sqlite3.Connection:
    DB_PATH.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(DB_PATH))
    conn.execute("CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, description TEXT, "
                 "status TEXT, assigned_agent TEXT)")
    return conn


def create_task(description: str) -> str:
    task_id = str(uuid.uuid4())
    with _conn() as conn:
        conn.execute("INSERT INTO tasks VALUES (?, ?, 'pending', NULL)", (task_id, description))
    return task_id


def update_task(task_id: str, **fields: str) -> None:
    with _conn() as conn:
        for name, value in fields.items():
            conn.execute(f"UPDATE tasks SET {name} = ? WHERE id = ?", (value, task_id))


def get_task(task_id: str) -> tuple[str, str, str, str | None] | None:
    with _conn() as conn:
        return conn.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
