from zenml import pipeline

from ledgerlink.config import Config
from steps import production_model, render_suggestions, resolve_open_month, suggest_links
from steps.hooks import alert_on_failure


@pipeline(enable_cache=False, on_failure=alert_on_failure)
def suggest(config: Config, month: str | None = None):
    """The production model matches the open (untagged) month; its suggestions go back to the warehouse."""
    model = production_model(model_name=config.model_name)
    open_month = resolve_open_month(store=config.store, month=month)
    suggestions = suggest_links(config=config, month=open_month, production_model=model)
    render_suggestions(suggestions=suggestions)
    return suggestions
