"""`escalator run` with asyncio tasks counted, for the benchmarks (not used in production).

    python tests/bench/counting_worker.py COUNT_FILE run [flags of escalator run]

Wraps `BaseEventLoop.create_task` (every task of the worker, `asyncio.create_task` and
`ensure_future` alike, is created there) and writes the running count to COUNT_FILE every
0.1 s, so a benchmark can divide the tasks created while it measured by the events processed.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

created = 0
_create_task = asyncio.BaseEventLoop.create_task


def _counting_create_task(self: Any, *args: Any, **kwargs: Any) -> Any:
    global created
    created += 1
    return _create_task(self, *args, **kwargs)


def _report(path: Path) -> None:
    while True:
        path.write_text(str(created))
        time.sleep(0.1)


def main() -> int:
    path = Path(sys.argv[1])
    asyncio.BaseEventLoop.create_task = _counting_create_task  # type: ignore[method-assign]
    threading.Thread(target=_report, args=(path,), daemon=True).start()
    from deploy.cli import main as cli_main

    return cli_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
