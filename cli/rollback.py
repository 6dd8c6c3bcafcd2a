"""``python run.py --rollback [--to VERSION]``: the previous (or the named) model version becomes production again.

A half-done change left by a stopped run is settled first (``utils.repair``), then ``utils.rollback`` ships the
target again (locally: exported to ``deploy.model_dir`` for ``--serve``; on GCP: its image digest gets a new, newer
tag in Artifact Registry, which Flux rolls out) and makes it production. Exit status: 0 done, 2 refused (nothing
changed, the reason is printed), 1 failed while shipping (production unchanged).
"""

from __future__ import annotations

import sys

from ledgerlink.config import Config


def rollback_command(cfg: Config | dict, to: str | None = None, echo=print) -> int:
    from utils.repair import repair
    from utils.rollback import RollbackFailed, RollbackRefused, rollback

    cfg = Config.coerce(cfg)
    repair(cfg, echo=echo)
    try:
        record = rollback(cfg, to, echo=echo)
    except RollbackRefused as exc:
        print(f"--rollback refused: {exc}", file=sys.stderr)
        return 2
    except RollbackFailed as exc:
        print(f"--rollback failed: {exc}", file=sys.stderr)
        return 1
    echo(f"Production is now version {record['version']} of {cfg.model_name!r}.")
    return 0
