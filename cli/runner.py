"""Run monthly cycles of the pipelines and print one summary table.

The cycle is: settle what a stopped run left half done in the Model Control Plane (``utils.repair``: a version left
in ``staging``, a production version without a successful deployment), collect the next month (if the warehouse has
one), then monitor and train, as ``--pipeline`` says. ``--pipeline training`` on a fresh machine therefore collects
first; a second call processes the next month. ``schedule()`` attaches a cron to each pipeline instead (one run
per pipeline, not this cycle).
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ledgerlink.config import Config
from ledgerlink.data.collect import next_month
from ledgerlink.data.store import store_at
from ledgerlink.data.suggest import SuggestError, no_production_model, open_month
from ledgerlink.data.warehouse import open_warehouse
from utils.pipeline_runs import CollectionRun, MonitoringRun, SuggestRun, TrainingRun, run_result

console = Console()


def say(message: str) -> None:
    """One plain line (not wrapped, no markup: messages carry lists such as ``[1, 2]`` and long file paths)."""
    console.print(message, soft_wrap=True, markup=False, highlight=False)


def collect(cfg: Config | dict, options: dict | None = None) -> CollectionRun:
    from pipelines import data_collection

    run = data_collection.with_options(**(options or {}))(config=Config.coerce(cfg))
    return run_result(CollectionRun, run)


def model_spec(cfg: Config):
    from zenml import Model

    return Model(
        name=cfg.model_name,
        description="Matches bank transfers to the invoices they pay.",
        tags=["ledgerlink", cfg.model.family],
    )


def train(cfg: Config | dict, enable_cache: bool = True, options: dict | None = None) -> TrainingRun:
    from pipelines import training

    cfg = Config.coerce(cfg)
    run = training.with_options(model=model_spec(cfg), enable_cache=enable_cache, **(options or {}))(config=cfg)
    return run_result(TrainingRun, run)


def monitor(cfg: Config | dict, options: dict | None = None) -> MonitoringRun:
    from pipelines import monitoring

    run = monitoring.with_options(**(options or {}))(config=Config.coerce(cfg))
    return run_result(MonitoringRun, run)


def suggest(cfg: Config | dict, month: str | None = None, options: dict | None = None) -> SuggestRun:
    """Run the suggest pipeline for ``month`` (default: the month after the newest collected). Refused before any run
    (``SuggestError``) when there is no production model or the month is collected already."""
    from pipelines import suggest as suggest_pipeline
    from utils.model_versions import production_version
    from utils.repair import repair

    cfg = Config.coerce(cfg)
    repair(cfg, echo=say)  # production must be the version the cluster serves before it suggests anything
    if production_version(cfg.model_name) is None:
        raise no_production_model(cfg.model_name)
    open_month(store_at(cfg.store.uri).collected_months(), month)  # the step checks again; this fails before a run
    run = suggest_pipeline.with_options(**(options or {}))(config=cfg, month=month)
    return run_result(SuggestRun, run)


def suggest_before_collection(cfg: Config | dict) -> SuggestRun | None:
    """The simulation's monthly suggest: production's suggestions for the month about to be collected, so the next
    monitoring run scores them on its tags. None (and a line) when there is nothing to suggest with yet."""
    try:
        return suggest(cfg)
    except SuggestError as exc:
        console.print(f"no suggestions this month: {exc}", markup=False, soft_wrap=True)
        return None


def run_suggest(cfg: Config, month: str | None = None, options: dict | None = None) -> int:
    """``--pipeline suggest``: one run and its summary; a refusal is one line on stderr and exit code 2."""
    try:
        done = suggest(cfg, month, options).suggestions
    except SuggestError as exc:
        console.print(f"error: {exc}", style="red", markup=False, soft_wrap=True)
        return 2
    if done.get("skipped"):
        console.print(done["skipped"], markup=False, soft_wrap=True)
        return 0
    table = Table(title=f"ledgerlink: suggestions for {done['month']} ({done['model_name']} v{done['model_version']})")
    for col in ("transfers", "auto", "review", "pays nothing", "rows written", "table"):
        table.add_column(col)
    counts = done["counts"]
    table.add_row(
        str(done["transfers"]),
        f"{counts['auto']} ({done['amounts']['auto']:,.2f})",
        f"{counts['review']} ({done['amounts']['review']:,.2f})",
        f"{counts['none']} ({counts['auto_none']} auto)",
        str(done["rows"]),
        done["table"],
    )
    console.print(table)
    return 0


def run_cycle(
    cfg: Config | dict, pipeline: str = "training", enable_cache: bool = True, options: dict | None = None
) -> dict | None:
    """One monthly cycle: collect the next month, monitor, train (as ``pipeline`` says). Returns the summary row."""
    from utils.repair import repair

    cfg = Config.coerce(cfg)
    repair(cfg, echo=say)
    store, warehouse = store_at(cfg.store.uri), open_warehouse(cfg.to_dict())
    month = next_month(warehouse, store)
    ref = watch = None
    if pipeline in ("data", "training", "all") and month is not None:
        ref = collect(cfg, options).dataset_ref
    elif pipeline == "data":
        console.print("No new month in the warehouse; the store is up to date.")
    if pipeline in ("monitoring", "all") and store.collected_months():
        watch = monitor(cfg, options)
    row = {
        "month": month or "(none new)",
        "rows": "",
        "candidate": "",
        "production": "",
        "decision": "",
        "drift": "",
        "fresh": "",
        "promoted": False,
        "values": {},
    }
    if watch is not None:
        share = watch.drift_summary.get("drift_share")
        row["drift"] = "" if share is None else f"{share:.2f}"
        fresh = watch.fresh_performance.get("metrics")
        challenger = watch.fresh_performance.get("challenger")
        row["fresh"] = f"{fresh['exact_set_accuracy']:.4f}" if fresh else watch.fresh_performance.get("skipped", "")
        if fresh and challenger:
            row["fresh"] += (
                f" (v{challenger['version']} not promoted: {challenger['metrics']['exact_set_accuracy']:.4f})"
            )
        row["values"].update(
            drift_share=share,
            fresh_accuracy=fresh["exact_set_accuracy"] if fresh else None,
            challenger_fresh_accuracy=challenger["metrics"]["exact_set_accuracy"] if challenger else None,
            fresh_auto_rate=fresh["auto_match_rate"] if fresh else None,
            auto_precision=watch.suggestion_quality.get("production", {}).get("auto_precision"),
            triggers=watch.retraining_decision["fired"],
        )
        if pipeline == "monitoring" or not watch.retraining_decision["retrain"]:
            row["decision"] = "; ".join(watch.retraining_decision["reasons"])
    if pipeline == "training" or (pipeline == "all" and (watch is None or watch.retraining_decision["retrain"])):
        if not store.collected_months():
            console.print("[red]Nothing collected yet and the warehouse has no month to collect.[/red]")
            return None
        trained = train(cfg, enable_cache, options)
        d = trained.decision
        cand = d["checks"].get("candidate")
        prod = d["checks"].get("production", d["checks"].get("rules"))
        label = "production" if not d["checks"].get("first_run") else "rules baseline"
        row.update(
            candidate=f"{cand:.4f}",
            production=f"{prod:.4f} ({label})",
            promoted=bool(d["promote"]),
            decision=(
                f"PROMOTED, deployed, version {trained.promotion['number']} is production"
                if d["promote"] and trained.deployment.get("status") == "success"
                else "kept production"
            )
            + ": "
            + "; ".join(d["reasons"]),
        )
        row["values"].update(
            candidate=cand, production=None if d["checks"].get("first_run") else prod, rules=d["checks"].get("rules")
        )
    ref = ref or store.ref()
    row["rows"] = f"{ref.train_rows.get('transfers', 0)} train / {ref.test_rows.get('transfers', 0)} test transfers"
    return row


def print_summary(rows: list[dict], pipeline: str, metric: str) -> None:
    table = Table(title=f"ledgerlink: {pipeline} ({metric} on the frozen test set)", show_lines=True)
    cols = ["month", "rows", "candidate", "production"]
    if pipeline in ("monitoring", "all", "simulate"):
        cols += ["drift", "fresh"]
    cols.append("decision")
    for col in cols:
        table.add_column(
            {"fresh": "production fresh-month acc.", "drift": "drift share"}.get(col, col),
            overflow="fold",
            max_width=70 if col == "decision" else None,
        )
    for r in rows:
        table.add_row(*(str(r[c]) for c in cols))
    console.print(table)


def run_cycles(
    cfg: Config | dict,
    pipeline: str = "training",
    months: int = 1,
    enable_cache: bool = True,
    options: dict | None = None,
) -> int:
    cfg = Config.coerce(cfg)
    rows = []
    for _ in range(months):
        row = run_cycle(cfg, pipeline, enable_cache, options)
        if row is None:
            return 1
        rows.append(row)
        if row["month"] == "(none new)" and pipeline != "monitoring":
            break
    print_summary(rows, pipeline, cfg.evaluation.primary_metric)
    return 0


def _forget_schedule(name: str) -> None:
    """Delete ZenML's record of a schedule whose Vertex submission failed: ZenML writes it before it calls
    Vertex AI, and a record left behind would refuse the rerun (check_schedule_names_free)."""
    from zenml.client import Client

    client = Client()
    for record in client.list_schedules(name=name, size=50).items:
        client.delete_schedule(record.id)


def schedule(cfg: Config, pipeline: str, options: dict) -> int:
    """Attach the schedule in ``options`` to each pipeline ``pipeline`` stands for, one named schedule per pipeline
    (``ledgerlink-<pipeline name>``); the orchestrator (Vertex) fires each on its own, not one after another.

    A refused or unanswered submission stops there with a message that says what to do and which schedules
    exist already (exit code 2)."""
    from pipelines import data_collection, monitoring, training
    from pipelines import suggest as suggest_pipeline

    from .schedule import SCHEDULED_PIPELINES, SUBMIT_TIMEOUT_S, SubmissionError, schedule_name, submit, vertex_target

    pipelines = {
        "data_collection": data_collection,
        "monitoring": monitoring,
        "training": training.with_options(model=model_spec(cfg)),
        "suggest": suggest_pipeline,
    }
    base = options["schedule"]
    project, location = vertex_target()
    done: list[str] = []
    for name in SCHEDULED_PIPELINES[pipeline]:
        sched = base.model_copy(update={"name": schedule_name(name)})
        scheduled = pipelines[name].with_options(**{**options, "schedule": sched})
        try:
            submit(
                lambda: scheduled(config=cfg),
                f"the schedule {schedule_name(name)!r}",
                project,
                location,
                SUBMIT_TIMEOUT_S,
            )
        except SubmissionError as exc:
            _forget_schedule(schedule_name(name))
            console.print(f"--schedule: {exc}", style="red", markup=False, soft_wrap=True)
            console.print(f"Scheduled before this one: {', '.join(done) or 'none'}.", markup=False, soft_wrap=True)
            return 2
        done.append(schedule_name(name))
        console.print(f"Scheduled {name!r} as {schedule_name(name)!r} with cron {base.cron_expression!r}.")
    console.print("List or delete schedules as the README describes (ZenML cannot update one).")
    return 0
