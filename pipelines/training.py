from zenml import pipeline

from steps import compare_with_production, current_dataset, deploy_model, evaluate_matcher, promote_model, train_matcher
from steps.hooks import alert_on_failure


@pipeline(on_failure=alert_on_failure)
def training(config: dict) -> None:
    """Train on all collected months, evaluate on the frozen test set, compare, promote, deploy."""
    ref = current_dataset(config=config)
    matcher = train_matcher(dataset_ref=ref, model=config["model"])
    evaluation, outcomes, _ = evaluate_matcher(matcher=matcher, dataset_ref=ref)
    decision, _ = compare_with_production(
        evaluation=evaluation,
        test_outcomes=outcomes,
        dataset_ref=ref,
        model_name=config["model_name"],
        promotion={**config["promotion"], **config["evaluation"]},
    )
    promotion = promote_model(decision=decision, evaluation=evaluation, dataset_ref=ref, alerts=config["alerts"])
    deploy_model(
        matcher=matcher,
        decision=decision,
        promotion=promotion,
        deploy=config["deploy"],
        alerts=config["alerts"],
        dataset_ref=ref,
    )
