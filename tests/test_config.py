"""The typed config: every mistake is an error naming the key and the file, before any work."""

from pathlib import Path

import pytest

from ledgerlink.config import PRIMARY_METRICS, Config, ConfigError, DeployConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str) -> tuple[str, Path]:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        Config.load(path)
    return str(info.value), path


@pytest.mark.parametrize(
    "yaml_text, key, says",
    [
        ("promotoin:\n  min_delta: 0.01\n", "promotoin", "unknown key (did you mean 'promotion'?)"),
        ("model:\n  params:\n    n_estimatros: 50\n", "model.params.n_estimatros", "did you mean 'n_estimators'"),
        ('promotion:\n  min_delta: "a lot"\n', "promotion.min_delta", "valid number"),
        ("promotion:\n  confidence: 95\n", "promotion.confidence", "0.95, not a percentage"),
        ("promotion:\n  bootstrap_samples: 0\n", "promotion.bootstrap_samples", "greater than or equal to 1"),
        ("promotion:\n  bootstrap_samples: 10\n", "promotion.bootstrap_samples", "use at least 40"),
        ("model:\n  params:\n    n_estimators: many\n", "model.params.n_estimators", "expected int"),
        ("model:\n  family: xgbost\n", "model.family", "did you mean 'xgboost'"),
        ("evaluation:\n  primary_metric: auto_match_rate\n", "evaluation.primary_metric", "not a primary metric"),
        ("deploy:\n  deployer: k8s\n", "deploy.deployer", "expected one of ['local', 'gcp']"),
        ("deploy:\n  gcp:\n    timeout: 5\n", "deploy.gcp.timeout", "did you mean 'timeout_s'"),
        ("deploy:\n  gcp:\n    poll_s: often\n", "deploy.gcp.poll_s", "valid number"),
        ("deploy:\n  deployer: gcp\n", "deploy.gcp.project", "the gcp deployer needs"),
        ("deploy:\n  currencies: [EURO]\n", "deploy.currencies", "ISO 4217"),
        ("monitoring:\n  retrain: sometimes\n", "monitoring.retrain", "'always' or 'on_trigger'"),
        ("monitoring:\n  drift_share: 30\n", "monitoring.drift_share", "less than or equal to 1"),
        ("split:\n  test_fraction: 1.5\n", "split.test_fraction", "less than 1"),
        ("synthetic:\n  contractrs: 10\n", "synthetic.contractrs", "did you mean 'contractors'"),
        ("synthetic:\n  months: twelve\n", "synthetic.months", "valid integer"),
        ("warehouse:\n  kind: snowflake\n", "warehouse.kind", "'duckdb' or 'bigquery'"),
        ("warehouse:\n  kind: bigquery\n", "warehouse.project", "needs the GCP project"),
        (
            "warehouse:\n  columns:\n    columns:\n      transfers: {titel: tx_title}\n",
            "warehouse.columns.columns.transfers.titel",
            "not a column",
        ),
        ("zenml:\n  family_steps:\n    xgb: {}\n", "zenml.family_steps.xgb", "unknown model family"),
    ],
)
def test_each_mistake_names_its_key_and_the_file(tmp_path, yaml_text, key, says):
    message, path = _error(tmp_path, "ledgerlink:\n" + "".join(f"  {ln}\n" for ln in yaml_text.splitlines()))
    assert message.startswith(f"{path}: ")
    assert f"  {key}: " in message and says in message, message


def test_all_mistakes_are_reported_at_once(tmp_path):
    message, path = _error(
        tmp_path, 'promotoin: {}\npromotion:\n  min_delta: "a lot"\n  confidence: 95\n  bootstrap_samples: 0\n'
    )
    assert message.startswith(f"{path}: 4 mistakes")
    for key in ("promotoin", "promotion.min_delta", "promotion.confidence", "promotion.bootstrap_samples"):
        assert f"\n  {key}: " in message


def test_a_webhook_in_the_file_is_refused_with_where_to_put_it(tmp_path):
    message, _ = _error(tmp_path, "alerts:\n  slack_webhook: https://hooks.slack.com/services/T1/B1/abc\n")
    assert "alerts.slack_webhook: a webhook URL is a secret" in message
    assert "LEDGERLINK_SLACK_WEBHOOK" in message and "zenml secret create ledgerlink --slack_webhook=" in message


def test_missing_file_bad_yaml_and_unknown_top_level_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"^config file not found: .*nowhere\.yaml$"):
        Config.load(tmp_path / "nowhere.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Config.load(_write(tmp_path, "ledgerlink: [unclosed\n"))
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        Config.load(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="zenmll: unknown top-level key"):
        Config.load(_write(tmp_path, "ledgerlink: {}\nzenmll: {}\n"))


def test_run_py_exits_2_with_the_message_before_any_work(tmp_path, monkeypatch, capsys):
    import run

    home = tmp_path / "home"
    monkeypatch.setenv("LEDGERLINK_HOME", str(home))
    assert run.main(["--pipeline", "training", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "error: config file not found" in capsys.readouterr().err
    bad = _write(tmp_path, "ledgerlink:\n  promotion:\n    confidence: 95\n")
    assert run.main(["--pipeline", "training", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "promotion.confidence" in err
    assert not home.exists()  # nothing was seeded, collected or trained


def test_sections_own_their_defaults_and_local_yaml_names_only_what_differs(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    default, local = Config.load(), Config.load(ROOT / "configs" / "local.yaml")
    assert default.model_dump() == local.model_dump()
    assert default.promotion.min_delta == 0.002 and default.synthetic.transfers_per_month == 800
    assert default.store.uri == f"{tmp_path}/home/datasets" and default.warehouse.path.startswith(str(tmp_path))
    # an empty section in YAML keeps its defaults instead of failing
    assert Config.load(_write(tmp_path, "ledgerlink:\n  monitoring:\n")).monitoring.drift_share == 0.3


def test_environment_and_data_dir_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("LL_BUCKET", "my-bucket")
    monkeypatch.setenv("LL_TIMEOUT", "900")
    monkeypatch.delenv("LL_UNSET", raising=False)
    cfg = Config.load(
        _write(
            tmp_path,
            "ledgerlink:\n  data_dir: ${LL_UNSET:-/srv/ll}\n  store: {uri: 'gs://${LL_BUCKET}/datasets'}\n"
            "  deploy:\n    model_dir: '{data_dir}/exports'\n    gcp: {timeout_s: '${LL_TIMEOUT}'}\n",
        )
    )
    assert cfg.data_dir == "/srv/ll" and cfg.deploy.model_dir == "/srv/ll/exports"
    assert cfg.warehouse.path == "/srv/ll/warehouse.duckdb"  # defaults get {data_dir} too
    assert cfg.store.uri == "gs://my-bucket/datasets" and cfg.deploy.gcp["timeout_s"] == "900"
    assert cfg.unresolved() == [] and cfg.check_environment() is cfg
    assert Config.coerce(cfg.to_dict()).model_dump() == cfg.model_dump()  # the dict view round-trips
    # ZenML dumps step parameters with exclude_unset: expanded defaults must survive that
    assert cfg.warehouse.model_dump(exclude_unset=True)["path"] == "/srv/ll/warehouse.duckdb"


def test_gcp_yaml_loads_and_unset_variables_stop_a_run(monkeypatch):
    for var in ("GCP_PROJECT", "GCP_REGION", "GCP_BUCKET"):
        monkeypatch.delenv(var, raising=False)
    cfg = Config.load(ROOT / "configs" / "gcp.yaml")
    assert cfg.deploy.deployer == "gcp" and "transformer" in cfg.zenml.family_steps
    with pytest.raises(ConfigError, match=r"gcp\.yaml: unset environment variable\(s\) in warehouse\.project \(GCP"):
        cfg.check_environment()
    monkeypatch.setenv("GCP_PROJECT", "p")
    monkeypatch.setenv("GCP_REGION", "europe-west4")
    monkeypatch.setenv("GCP_BUCKET", "b")
    cfg = Config.load(ROOT / "configs" / "gcp.yaml").check_environment()
    assert cfg.store.uri == "gs://b/ledgerlink/datasets"
    assert cfg.deploy.gcp["registry"] == "europe-west4-docker.pkg.dev/p/ledgerlink/ledgerlink"
    assert load_config(ROOT / "configs" / "gcp.yaml")["warehouse"]["project"] == "p"  # the dict view


def test_model_params_follow_the_family_signature():
    cfg = Config.parse({"model": {"family": "transformer", "params": {"checkpoint": "x", "max_depth": 4}}})
    assert cfg.model.params == {"checkpoint": "x", "max_depth": 4}  # max_depth reaches Matcher through **params
    with pytest.raises(ConfigError, match="model.params.max_depth: not a parameter of the rules family"):
        Config.parse({"model": {"family": "rules", "params": {"max_depth": 4}}})
    # an int where the default is a float is fine
    assert Config.parse({"model": {"params": {"learning_rate": 1}}}).model.params["learning_rate"] == 1


def test_step_parameters_are_checked_by_the_same_models():
    with pytest.raises(ValueError, match="unknown deployer"):
        DeployConfig.model_validate({"deployer": "k8s"})
    assert DeployConfig.model_validate({"currencies": ["eur", "PLN"]}).currencies == ["EUR", "PLN"]


def test_primary_metrics_are_the_ones_the_bootstrap_resamples():
    import pandas as pd

    from ledgerlink.evaluation.compare import paired_bootstrap
    from ledgerlink.evaluation.metrics import METRICS

    outcomes = pd.DataFrame(
        {"transfer_id": ["a", "b", "c"], "tp": [1, 0, 1], "fp": [0, 1, 0], "fn": [0, 1, 1], "exact": [1, 0, 0]}
    )
    outcomes["auto"] = False
    for metric in PRIMARY_METRICS:
        assert paired_bootstrap(outcomes, outcomes, metric, samples=50)["gain"] == 0.0
    for metric in set(METRICS) - set(PRIMARY_METRICS):
        with pytest.raises(ValueError, match="bootstrap supports"):
            paired_bootstrap(outcomes, outcomes, metric, samples=50)
