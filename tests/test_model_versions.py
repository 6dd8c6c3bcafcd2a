"""The Model Control Plane contract (utils/model_versions.py): typed, and the same keys on both sides of ZenML."""

import math
import uuid

import pytest

from utils.model_versions import FreshScore, ModelVersionMetadata, StageChange

TRAINED = {
    "data_months": ["2025-01", "2025-02"],
    "train_fingerprint": "aa",
    "test_fingerprint": "bb",
    "metrics": {"pair_f1": 0.97},
    "evaluation": {"metrics": {"pair_f1": 0.97}, "slices": {"single": {"n_transfers": 40}}},
    "rules_evaluation": {"metrics": {"pair_f1": 0.6}, "slices": {}},
    "auto_threshold": 0.93,
    "decision": {"promote": True, "reasons": ["first model"]},
}


def test_round_trip_through_the_stored_keys():
    meta = ModelVersionMetadata.from_run_metadata(
        {
            **TRAINED,
            "deployment": {"deployed": True, "status": "success", "bento_tag": "ledgerlink:abc"},
            "fresh_2025-03": {"metrics": {"exact_set_accuracy": 0.9}},
            "fresh_2025-04": {"metrics": {"exact_set_accuracy": 0.8}, "as": "challenger"},
            "challenge_2025-04": {"month": "2025-04", "challenger": 3, "gain": 0.01, "lower": 0.001},
            "something_else": 1,  # not ours: ignored
        }
    )
    assert meta.data_months == ["2025-01", "2025-02"] and meta.auto_threshold == 0.93
    assert meta.fresh["2025-03"] == FreshScore({"exact_set_accuracy": 0.9})
    assert meta.fresh["2025-04"].role == "challenger"
    assert meta.fresh_metrics() == {"2025-03": {"exact_set_accuracy": 0.9}, "2025-04": {"exact_set_accuracy": 0.8}}
    assert meta.challenges["2025-04"]["challenger"] == 3
    stored = meta.to_metadata()
    assert "something_else" not in stored
    assert ModelVersionMetadata.from_run_metadata(stored) == meta


def test_only_what_is_set_is_written_and_nan_never():
    assert ModelVersionMetadata(deployment={"deployed": False}).to_metadata() == {"deployment": {"deployed": False}}
    assert ModelVersionMetadata(auto_threshold=math.nan).to_metadata() == {}
    assert ModelVersionMetadata(fresh={"2025-05": FreshScore({"a": 1.0}, "challenger")}).to_metadata() == {
        "fresh_2025-05": {"metrics": {"a": 1.0}, "as": "challenger"}
    }


def test_from_training_builds_what_promote_model_records():
    from ledgerlink.data.store import DatasetRef

    ref = DatasetRef("/s", ["2025-01"], {}, {}, "trainfp", "testfp", "2025-01")
    evaluation = {
        "candidate": TRAINED["evaluation"],
        "rules": TRAINED["rules_evaluation"],
        "test_fingerprint": "testfp",
        "auto_threshold": 0.91,
    }
    decision = {"promote": False, "reasons": ["gain below min_delta"], "checks": {"candidate": 0.97}}
    stored = ModelVersionMetadata.from_training(evaluation, ref, decision).to_metadata()
    assert stored == {
        "data_months": ["2025-01"],
        "train_fingerprint": "trainfp",
        "test_fingerprint": "testfp",
        "metrics": {"pair_f1": 0.97},
        "evaluation": TRAINED["evaluation"],
        "rules_evaluation": TRAINED["rules_evaluation"],
        "auto_threshold": 0.91,
        "decision": {"promote": False, "reasons": ["gain below min_delta"]},
    }


@pytest.mark.parametrize(
    "deployment, why",
    [
        ({"deployed": True, "status": "success"}, None),
        ({"status": "failed", "stage": "smoke_test", "error": "boom"}, "its deploy failed at smoke_test (boom)."),
        (
            {"status": "failed", "stage": "gcp", "error": "FAILURE", "log_url": "https://log"},
            "its deploy failed at gcp (FAILURE). Build log: https://log",
        ),
        ({"deployed": False, "reason": "gain below min_delta"}, "it was not promoted, so never deployed"),
        (None, "it has no deployment record: it was never deployed"),
    ],
)
def test_only_a_successful_deploy_counts_and_the_reason_is_said(deployment, why):
    meta = ModelVersionMetadata(deployment=deployment)
    assert meta.deployment_succeeded() is (why is None)
    assert (meta.why_not_deployed() or "").startswith(why or "")
    assert (meta.why_not_deployed() is None) is (why is None)


def test_stage_change_round_trips_and_ends():
    change = StageChange("rollback", previous=4)
    stored = ModelVersionMetadata(stage_change=change).to_metadata()
    expected = {"action": "rollback", "state": "pending", "previous": 4, "id": change.id, "at": change.at}
    assert stored == {"stage_change": expected}
    back = ModelVersionMetadata.from_run_metadata(stored).stage_change
    assert back == change and back.ended("done") == StageChange("rollback", "done", 4, change.id, change.at)


def test_logged_and_read_back_through_zenml_with_the_deployer_view():
    from zenml.client import Client

    from utils.model_versions import log_model_version_metadata, model_version_info, production_version

    client, name = Client(), f"contract_{uuid.uuid4().hex[:8]}"
    client.create_model(name)
    mv = client.create_model_version(name)
    log_model_version_metadata(ModelVersionMetadata.from_run_metadata(TRAINED), name, mv.number)
    log_model_version_metadata(ModelVersionMetadata(fresh={"2025-03": FreshScore({"acc": 0.9})}), name, mv.number)
    assert production_version(name) is None
    client.update_model_version(name, mv.id, stage="production")
    prod = production_version(name)
    assert prod.number == mv.number and prod.run_metadata["auto_threshold"] == 0.93  # the key as stored
    meta = ModelVersionMetadata.of(prod)
    assert meta == ModelVersionMetadata(**TRAINED, fresh={"2025-03": FreshScore({"acc": 0.9})})
    info = model_version_info(name, prod, currencies=["EUR"])
    assert (info.model_name, info.number, info.model_version_id) == (name, mv.number, str(mv.id))
    assert info.auto_threshold == 0.93 and info.months == ["2025-01", "2025-02"] and info.metrics == {"pair_f1": 0.97}
    assert info.currencies == ["EUR"]
