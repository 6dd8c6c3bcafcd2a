"""ledgerlink command line: pick a pipeline and a config, run it, print what happened.

python run.py --pipeline training            # collects the next month first, then trains
python run.py --pipeline data                # only collect the next month
python run.py --pipeline all --months 3      # three monthly cycles in a row
python run.py --pipeline suggest             # the production model's suggestions for the open month
python run.py --rollback [--to 3]            # the previous (or the named) version becomes production again
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
os.environ.setdefault("AUTO_OPEN_DASHBOARD", "false")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", choices=["data", "training", "monitoring", "all", "suggest"], default="training")
    p.add_argument(
        "--month", metavar="YYYY-MM", help="--pipeline suggest: the open month (default: after the newest collected)"
    )
    p.add_argument("--config", default=str(ROOT / "configs" / "local.yaml"), help="YAML run configuration")
    p.add_argument("--no-cache", action="store_true", help="disable ZenML step caching")
    p.add_argument("--months", type=int, default=1, help="run N monthly cycles in a row")
    p.add_argument(
        "--simulate",
        type=int,
        metavar="N",
        help="fresh state, N monthly cycles of collection, "
        "monitoring and training on synthetic data with a drift event, then a plot",
    )
    p.add_argument("--drift-month", type=int, default=7, help="month of the drift event in --simulate; 0: no drift")
    p.add_argument("--seed", type=int, help="--simulate: seed of the synthetic world (default: synthetic.seed)")
    p.add_argument(
        "--schedule", metavar="CRON", help='schedule instead of running now, e.g. "0 3 1 * *" (needs the gcp stack)'
    )
    p.add_argument("--timezone", help="IANA timezone for --schedule (default UTC), e.g. Europe/Warsaw")
    p.add_argument(
        "--serve",
        action="store_true",
        help="serve the production model with `bentoml serve` in the foreground (Ctrl+C stops it)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the Cloud Build request the gcp deployer would send for the production model; send nothing",
    )
    p.add_argument(
        "--rollback",
        action="store_true",
        help="make the previous model version whose deploy succeeded production again and deploy it again "
        "(locally: export it for --serve; gcp: a new image tag for its image in Artifact Registry, for Flux)",
    )
    p.add_argument("--to", metavar="VERSION", help="--rollback: the model version (number or name) to roll back to")
    p.add_argument("--host", default="127.0.0.1", help="--serve: address to bind")
    p.add_argument("--port", type=int, default=3000, help="--serve: port")
    p.add_argument(
        "--workers", type=int, default=None, help="--serve: BentoML worker processes (default: one per CPU, up to 4)"
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from ledgerlink.config import Config, ConfigError

    try:  # every config mistake stops here, before any work, with the key and the file named
        cfg = Config.load(args.config)
        if not args.serve:
            cfg.check_environment()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.to is not None and not args.rollback:
        print("--to goes with --rollback", file=sys.stderr)
        return 2
    if args.rollback:
        if args.serve or args.dry_run or args.schedule or args.simulate:
            print("--rollback goes alone (with --to and --config)", file=sys.stderr)
            return 2
        from cli.rollback import rollback_command

        return rollback_command(cfg, args.to)
    if args.serve or args.dry_run:
        if args.serve and args.dry_run:
            print("--serve and --dry-run do not go together", file=sys.stderr)
            return 2
        from cli.serve import NoProductionModel, dry_run, serve_production

        try:
            if args.dry_run:
                print(dry_run(cfg)[1])
                return 0
            return serve_production(cfg, port=args.port, host=args.host, workers=args.workers)
        except (NoProductionModel, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    from cli.runner import run_cycles, schedule
    from cli.schedule import (
        ScheduleError,
        build_schedule,
        check_orchestrator_can_schedule,
        check_schedule_names_free,
        run_options,
    )

    if args.schedule:
        try:
            sched = build_schedule(args.schedule, args.timezone)
            check_orchestrator_can_schedule()
            check_schedule_names_free(args.pipeline)
        except ScheduleError as exc:
            print(f"--schedule: {exc}", file=sys.stderr)
            return 2
        return schedule(cfg, args.pipeline, run_options(cfg.zenml, cfg.model.family, sched))
    if args.simulate:
        from cli.simulate import SimulationArgsError, simulate

        try:
            simulate(cfg.to_dict(), months=args.simulate, drift_month=args.drift_month, seed=args.seed)
        except SimulationArgsError as exc:
            print(f"--simulate: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.months < 1:
        print("--months must be at least 1", file=sys.stderr)
        return 2
    if args.month is not None and args.pipeline != "suggest":
        print("--month goes with --pipeline suggest", file=sys.stderr)
        return 2
    if args.pipeline == "suggest":
        if args.months != 1:
            print("--months does not go with --pipeline suggest; name the open month with --month", file=sys.stderr)
            return 2
        from cli.runner import run_suggest

        return run_suggest(cfg, args.month, options=run_options(cfg.zenml, cfg.model.family))
    return run_cycles(
        cfg,
        pipeline=args.pipeline,
        months=args.months,
        enable_cache=not args.no_cache,
        options=run_options(cfg.zenml, cfg.model.family),
    )


if __name__ == "__main__":
    sys.exit(main())
