"""Monthly schedules: a cron expression checked before anything is built or submitted.

Only an orchestrator that schedules natively can take a schedule; on the GCP stack that is Vertex AI
Pipelines (``PipelineJob.create_schedule``). ZenML's local orchestrator cannot, so
``check_orchestrator_can_schedule`` stops at once and says how to switch to the GCP stack, instead
of running once and leaving people to believe a schedule exists. ZenML cannot update or delete a
Vertex schedule afterwards: to change one, delete it in Vertex AI and submit again (README).
"""

from __future__ import annotations

import datetime as dt

from zenml.config.schedule import Schedule

from ledgerlink.config import ZenMLOptions

GCP_STACK = "ledgerlink-gcp"
HOW_TO_GCP = f"make stack-gcp PROJECT=<project> REGION=<region> BUCKET=<bucket>\n  zenml stack set {GCP_STACK}"


class ScheduleError(ValueError):
    """A schedule that cannot work: bad cron or timezone, or an orchestrator without schedules."""


def validate_cron(cron: str) -> str:
    """Return the normalised 5-field cron expression, or raise ScheduleError saying what is wrong."""
    from croniter import croniter

    expr = " ".join(str(cron or "").split())
    fields = expr.split(" ") if expr else []
    if expr.upper().startswith(("TZ=", "CRON_TZ=")):
        raise ScheduleError(
            f"cron {cron!r}: give the timezone separately (--timezone Europe/Warsaw), not in the expression"
        )
    if len(fields) != 5 or not croniter.is_valid(expr):
        raise ScheduleError(
            f"{cron!r} is not a valid cron expression: Vertex AI takes 5 fields "
            "'minute hour day-of-month month day-of-week', e.g. '0 3 1 * *' = 03:00 on the 1st of every month"
        )
    return expr


def build_schedule(
    cron: str,
    timezone: str | None = None,
    name: str | None = None,
    start_time: dt.datetime | None = None,
    end_time: dt.datetime | None = None,
) -> Schedule:
    """A ZenML Schedule for ``cron`` in ``timezone`` (IANA name; default UTC).

    Vertex AI reads the timezone from a ``TZ=<zone>`` prefix of the cron expression, so it is put
    there; ``next_runs`` shows what that means before submitting.
    """
    expr = validate_cron(cron)
    if timezone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ScheduleError(
                f"timezone {timezone!r} is not an IANA timezone name such as 'Europe/Warsaw' or 'UTC'"
            ) from exc
        expr = f"TZ={timezone} {expr}"
    return Schedule(name=name, cron_expression=expr, start_time=start_time, end_time=end_time)


def next_runs(schedule: Schedule, n: int = 3, after: dt.datetime | None = None) -> list[dt.datetime]:
    """The next ``n`` fire times of a schedule built by ``build_schedule``, timezone-aware."""
    from zoneinfo import ZoneInfo

    from croniter import croniter

    expr, zone = schedule.cron_expression, ZoneInfo("UTC")
    if expr.startswith("TZ="):
        tz, expr = expr[3:].split(" ", 1)
        zone = ZoneInfo(tz)
    it = croniter(expr, (after or dt.datetime.now(dt.timezone.utc)).astimezone(zone))
    return [it.get_next(dt.datetime) for _ in range(n)]


def check_orchestrator_can_schedule(client=None) -> str:
    """Fail fast unless the active stack's orchestrator can run schedules; return its flavor.

    Reads the orchestrator's flavor and configuration from the ZenML store, so it needs neither the
    orchestrator's SDK (kfp, aiplatform) nor any cloud call.
    """
    from zenml.client import Client
    from zenml.enums import StackComponentType
    from zenml.stack.flavor import Flavor

    client = client or Client()
    stack = client.active_stack_model
    (orchestrator,) = stack.components[StackComponentType.ORCHESTRATOR]
    flavor = Flavor.from_model(
        client.get_flavor_by_name_and_type(orchestrator.flavor_name, StackComponentType.ORCHESTRATOR)
    )
    config = flavor.config_class(**orchestrator.configuration)
    if not config.is_schedulable:
        raise ScheduleError(
            f"the active stack '{stack.name}' runs pipelines on the '{orchestrator.flavor_name}' orchestrator, "
            "which cannot run schedules (it would run once and schedule nothing). Schedules run on the GCP stack, "
            f"where Vertex AI Pipelines fires them:\n  {HOW_TO_GCP}\nthen run again with --schedule; or drop "
            "--schedule to run once now."
        )
    return orchestrator.flavor_name


SCHEDULED_PIPELINES = {
    "data": ["data_collection"],
    "monitoring": ["monitoring"],
    "training": ["training"],
    "all": ["data_collection", "monitoring", "training"],
}


def schedule_name(pipeline_name: str) -> str:
    """One schedule per pipeline: ZenML schedule names are unique within a project."""
    return f"ledgerlink-{pipeline_name}"


def check_schedule_names_free(pipeline: str, client=None) -> list[str]:
    """The schedule names ``--pipeline`` needs, if none exists yet (ZenML cannot update a schedule; a name in use
    would fail after the other pipelines were already scheduled). Returns the names."""
    from zenml.client import Client

    client = client or Client()
    names = [schedule_name(p) for p in SCHEDULED_PIPELINES[pipeline]]
    taken = [n for n in names if client.list_schedules(name=n, size=1).total]
    if taken:
        raise ScheduleError(
            f"schedule(s) {taken} exist already and ZenML cannot update a schedule. Delete each with "
            f"`zenml pipeline schedule delete <name>` and its Vertex AI schedule (README: "
            '"From the local default to monthly runs on Google Cloud"), then schedule again.'
        )
    return names


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def run_options(zenml: ZenMLOptions, family: str | None = None, schedule: Schedule | None = None) -> dict:
    """Keyword arguments for ``pipeline.with_options``: the config's ``zenml:`` section (``Config.zenml``).

    ``steps`` gets ``family_steps[family]`` merged over it, so e.g. only the transformer family asks
    Vertex for a GPU. Local configs have no ``zenml:`` section and get only the schedule (if any).
    """
    steps = _merge(zenml.steps, zenml.family_steps.get(family) or {})
    options: dict = {}
    if zenml.settings:
        options["settings"] = zenml.settings
    if steps:
        options["steps"] = steps
    if schedule is not None:
        options["schedule"] = schedule
    return options
