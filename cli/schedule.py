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
    "suggest": ["suggest"],
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


# -- submitting to Vertex AI: errors that say what to do ---------------------------------------------------
# The first submission of a pipeline builds its step image on Cloud Build (the stack's image builder allows
# up to 3600 s, stacks/gcp.yaml) before Vertex AI is called; neither aiplatform nor ZenML put a deadline on
# the Vertex AI call itself (PipelineJob.submit / create_schedule are sent with timeout=None).
SUBMIT_TIMEOUT_S = 3600 + 600
CONSOLE = "https://console.cloud.google.com"


class SubmissionError(RuntimeError):
    """Vertex AI (or Cloud Build, for the step image) refused a submission or did not answer."""


def _api_error(exc: BaseException):
    """The Google API error (or HTTP timeout) behind ``exc``: ZenML re-raises Vertex AI's 4xx as a plain
    RuntimeError inside its ``except`` block, so the original is in the exception's context chain."""
    from google.api_core import exceptions as google_exceptions
    from requests import exceptions as requests_exceptions

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (google_exceptions.GoogleAPICallError, requests_exceptions.Timeout)):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def explain_submission_failure(exc: BaseException, what: str, project: str, location: str) -> SubmissionError:
    """A SubmissionError for ``exc`` raised while submitting ``what``: what happened and what to do next."""
    from google.api_core import exceptions as google_exceptions
    from requests import exceptions as requests_exceptions

    api = _api_error(exc)
    detail = str(api or exc).strip()
    cloud_build = "/builds" in detail or "Cloud Build" in str(exc)
    service = "Cloud Build (the step image)" if cloud_build else "Vertex AI"
    schedules = f"{CONSOLE}/vertex-ai/pipelines/schedules?project={project}"
    if isinstance(api, google_exceptions.Forbidden):
        roles = (
            "roles/cloudbuild.builds.editor and roles/storage.objectAdmin on the bucket"
            if cloud_build
            else "roles/aiplatform.user, and roles/iam.serviceAccountUser on the runner service account"
        )
        msg = (
            f"{service} refused {what} in project {project!r} (403 permission denied). The account that submits "
            f"(the ledgerlink-gcp service connector's) needs {roles} (README: IAM roles). Grant them, e.g. "
            f"`gcloud projects add-iam-policy-binding {project} --member=serviceAccount:<email> --role=<role>`, "
            "then submit again. Nothing was created."
        )
    elif isinstance(api, google_exceptions.Conflict):
        msg = (
            f"{service} refused {what} (409): a resource with this name exists already in {project}/{location}. "
            f"A Vertex schedule cannot be updated: delete it ({schedules}, or PipelineJobSchedule.delete(), "
            "README) and ZenML's record (`zenml pipeline schedule delete <name>`), then schedule again."
        )
    elif isinstance(api, (google_exceptions.DeadlineExceeded, requests_exceptions.Timeout)) or isinstance(
        exc, TimeoutError
    ):
        msg = (
            f"{service} did not answer {what} in time ({detail}). It may or may not have been created: look at "
            f"{schedules} and the Cloud Build history before submitting again (a schedule name in use is refused)."
        )
    elif isinstance(api, google_exceptions.ServerError):
        msg = (
            f"{service} failed on its side while taking {what} ({api.code} {api.reason or ''}, a server error, "
            "not a problem with the request). Nothing was created: submit again in a few minutes; if it persists, "
            "see https://status.cloud.google.com."
        )
    elif api is not None:
        msg = f"{service} refused {what}: {detail}"
    elif cloud_build:  # ZenML's image builder: the build ran and did not succeed
        msg = (
            f"Cloud Build could not build the step image for {what}. Its log (the link above) says why; most "
            "often a package that does not install in the image (tests/test_vertex_image.py checks that the lock "
            "resolves for it). Fix the cause and submit again; nothing was scheduled."
        )
    else:
        raise exc
    return SubmissionError(f"{msg}\n  ({type(api or exc).__name__}: {detail[:500]})")


def submit(fn, what: str, project: str, location: str, timeout_s: float = SUBMIT_TIMEOUT_S):
    """Run ``fn`` (a ZenML pipeline call that builds the image and submits to Vertex AI) with a deadline, and turn
    Google API failures into a SubmissionError that says what to do.

    ``fn`` runs in a daemon thread: when the deadline passes, the command line reports and exits, and a call
    that hangs on a socket without timeout cannot keep it waiting.
    """
    import threading

    outcome: dict = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, name=f"ledgerlink-submit {what}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise explain_submission_failure(
            TimeoutError(f"no answer within {timeout_s:g} s"), what, project, location
        ) from None
    if "error" in outcome:
        raise explain_submission_failure(outcome["error"], what, project, location) from None
    return outcome.get("value")


def vertex_target(client=None) -> tuple[str, str]:
    """(project, location) of the active stack's Vertex orchestrator, for messages."""
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = client or Client()
    (orchestrator,) = client.active_stack_model.components[StackComponentType.ORCHESTRATOR]
    config = orchestrator.configuration
    return config.get("project") or "<project>", config.get("location") or "<region>"
