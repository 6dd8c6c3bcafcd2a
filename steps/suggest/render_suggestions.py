from typing import Annotated

from zenml import step
from zenml.types import HTMLString

from ledgerlink.monitoring.suggestion_report import suggestions_html


@step(enable_cache=False)
def render_suggestions(suggestions: dict) -> Annotated[HTMLString, "suggestions_report"]:
    """The run's dashboard view: counts and amounts of auto / review / none, the confidence distribution."""
    return HTMLString(suggestions_html(suggestions))
