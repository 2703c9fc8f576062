#!/usr/bin/env python3
"""Completion probe for Sentinel's embedded SQLite store, for bench/peers/run.

Opens the store read-only and answers one line per request on stdin:
  first      -> 1 once any task has completed, else 0
  busy       -> 1 while any task is pending, failed (to be retried) or running, else 0
  completed  -> the number of completed tasks
`busy` reads the store's partial indexes (tasks_ready, tasks_running), so it costs the same
whatever the number of finished tasks. Standard library only.
"""
import sqlite3
import sys

BUSY = (
    "SELECT EXISTS(SELECT 1 FROM tasks WHERE state IN ('pending', 'failed'))"
    " OR EXISTS(SELECT 1 FROM tasks WHERE state = 'running')"
)
FIRST = "SELECT EXISTS(SELECT 1 FROM tasks WHERE state = 'completed')"
COMPLETED = "SELECT count(*) FROM tasks WHERE state = 'completed'"


def main() -> None:
    conn = sqlite3.connect(
        f"file:{sys.argv[1]}?mode=ro", uri=True, isolation_level=None, timeout=10
    )
    for line in sys.stdin:
        cmd = line.strip()
        try:
            if cmd == "first":
                answer = conn.execute(FIRST).fetchone()[0]
            elif cmd == "busy":
                answer = conn.execute(BUSY).fetchone()[0]
            elif cmd == "completed":
                answer = conn.execute(COMPLETED).fetchone()[0]
            else:
                answer = f"error unknown request {cmd!r}"
        except sqlite3.Error as e:
            answer = f"error {e}"
        print(answer, flush=True)


if __name__ == "__main__":
    main()
