from zenml import pipeline

from ledgerlink.config import Config
from steps import compare_with_production, current_dataset, deploy_model, evaluate_matcher, promote_model, train_matcher
from steps.hooks import alert_on_failure


@pipeline(on_failure=alert_on_failure)
def training(config: Config):
    """Train on all collected months, evaluate on the frozen test set, compare, promote, deploy."""
    ref = current_dataset(store=config.store)
    matcher = train_matcher(dataset_ref=ref, model=config.model)
    evaluation, outcomes, _ = evaluate_matcher(matcher=matcher, dataset_ref=ref)
    decision, _ = compare_with_production(
        evaluation=evaluation,
        test_outcomes=outcomes,
        dataset_ref=ref,
        model_name=config.model_name,
        promotion=config.promotion_rule(),
    )
    promotion = promote_model(decision=decision, evaluation=evaluation, dataset_ref=ref)
    deployment = deploy_model(
        matcher=matcher, decision=decision, promotion=promotion, deploy=config.deploy, dataset_ref=ref
    )
    return evaluation, decision, promotion, deployment
