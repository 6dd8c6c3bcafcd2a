from typing import Annotated

from zenml import log_metadata, step
from zenml.types import HTMLString

from ledgerlink.config import MonitoringConfig
from ledgerlink.data.store import DatasetRef
from ledgerlink.monitoring.drift import PAIR_FEATURE_VIEW, RAW_VIEW, detect_drift, drift_summary_html, raw_columns
from ledgerlink.monitoring.references import drift_reference_months
from utils.model_versions import ModelVersionMetadata, production_version


@step(enable_cache=False)
def detect_data_drift(
    dataset_ref: DatasetRef, model_name: str, monitoring: MonitoringConfig
) -> tuple[Annotated[dict, "drift_summary"], Annotated[HTMLString, "drift_report"]]:
    """Evidently drift: production's training months (reference) vs the newest month (current)."""
    store = dataset_ref.open()
    newest = dataset_ref.months[-1]
    prod = production_version(model_name)
    prod_months = ModelVersionMetadata.of(prod).data_months if prod is not None else None
    ref_months = drift_reference_months(prod_months, dataset_ref.months, newest)
    if not ref_months:
        summary = {"month": newest, "drift_share": None, "reason": "no earlier month to compare with"}
        return summary, HTMLString(f"<p>No drift report: {summary['reason']}.</p>")
    reference = store.load_train(ref_months)["transfers"]
    current = store.load_train([newest])["transfers"]
    views = [detect_drift(raw_columns(reference), raw_columns(current), RAW_VIEW, monitoring.max_rows)]
    if prod is not None:  # the model's own view: best-candidate pair features, the same code as training
        matcher = prod.get_artifact("matcher").load()
        pool = store.load_train(sorted(set(ref_months) | {newest}))["invoices"]
        if len(reference) > monitoring.max_rows:
            reference = reference.sample(n=monitoring.max_rows, random_state=0)
        views.append(
            detect_drift(
                matcher.pair_feature_frame(pool, reference),
                matcher.pair_feature_frame(pool, current),
                PAIR_FEATURE_VIEW,
                monitoring.max_rows,
            )
        )
    summary = {
        "month": newest,
        "reference_months": ref_months,
        "drift_share": max(v.drift_share for v in views),
        "views": {v.view: v.summary() for v in views},
    }
    log_metadata(
        metadata={
            "drift": {
                "month": newest,
                "drift_share": summary["drift_share"],
                "drifted_columns": {v.view: v.drifted_columns for v in views},
            }
        }
    )
    html = drift_summary_html(newest, ref_months, views) + "".join(
        f"<h1>Evidently report: {v.view}</h1>" + v.html for v in views
    )
    return summary, HTMLString(html)
