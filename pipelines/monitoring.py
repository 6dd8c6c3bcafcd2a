from zenml import pipeline

from ledgerlink.config import Config
from steps import (
    current_dataset,
    decide_retraining,
    detect_data_drift,
    score_production_on_fresh_month,
    score_suggestions,
)
from steps.hooks import alert_on_failure


@pipeline(enable_cache=False, on_failure=alert_on_failure)
def monitoring(config: Config):
    """Drift of the newest month vs production's training data, production's fresh-month score, its suggestions of
    the month scored against the tags, triggers."""
    ref = current_dataset(store=config.store)
    drift_summary, _ = detect_data_drift(dataset_ref=ref, model_name=config.model_name, monitoring=config.monitoring)
    fresh_performance = score_production_on_fresh_month(
        dataset_ref=ref, model_name=config.model_name, promotion=config.promotion_rule()
    )
    suggestion_quality = score_suggestions(dataset_ref=ref, config=config)
    retraining_decision = decide_retraining(
        drift_summary=drift_summary,
        fresh_performance=fresh_performance,
        suggestion_quality=suggestion_quality,
        monitoring=config.monitoring,
    )
    return drift_summary, fresh_performance, suggestion_quality, retraining_decision
