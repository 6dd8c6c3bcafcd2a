from zenml import pipeline

from steps import current_dataset, decide_retraining, detect_data_drift, score_production_on_fresh_month
from steps.hooks import alert_on_failure


@pipeline(enable_cache=False, on_failure=alert_on_failure)
def monitoring(config: dict) -> None:
    """Drift of the newest month vs production's training data, production's fresh-month score, triggers."""
    ref = current_dataset(config=config)
    drift, _ = detect_data_drift(dataset_ref=ref, model_name=config["model_name"], monitoring=config["monitoring"])
    fresh = score_production_on_fresh_month(
        dataset_ref=ref, model_name=config["model_name"], promotion={**config["promotion"], **config["evaluation"]}
    )
    decide_retraining(
        drift_summary=drift, fresh_performance=fresh, monitoring=config["monitoring"], alerts=config["alerts"]
    )
