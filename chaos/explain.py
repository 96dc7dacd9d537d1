#!/usr/bin/env python
"""Print the history of workflows of a finished chaos run: status changes, checkpoints and step
bodies, in time order, from the run's saved data (RUN/data.json.gz).

    python chaos/explain.py chaos/runs/seed1-... WORKFLOW_ID [WORKFLOW_ID ...]

A workflow id ending in `*` shows the workflow and all its children (`{id}-1`, `{id}-2`, ...).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from chaos import checks  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("workflow_ids", nargs="+")
    args = parser.parse_args(argv)
    data = checks.restore(args.run_dir)
    for pattern in args.workflow_ids:
        if pattern.endswith("*"):
            ids = sorted(wf for wf in data.workflows if wf.startswith(pattern[:-1]))
        else:
            ids = [pattern]
        for workflow_id in ids:
            row = data.workflows.get(workflow_id)
            status = f"{row['status']} on {row['executor']}" if row else "not in the database"
            print(f"== {workflow_id}: {status}")
            for line in checks.timeline(data, workflow_id, limit=1000):
                print(f"   {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
