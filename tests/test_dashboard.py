"""python -m vscale.dashboard: a wandb workspace for one study, built offline from what its runs logged."""

import json

import pytest
from conftest import train

from vscale.launch.dashboard import logged_metrics, main, spec, workspace


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    train(root, "--trainer.max_steps=20", "--run.val_every_n_steps=10", "--model.vscale=learned")
    return root / "tiny"


def test_every_metric_a_run_logged_has_a_panel_grouped_by_arm(experiment):
    metrics = logged_metrics(experiment)
    built = spec("tiny", metrics)
    shown = {y for section in built["sections"] for panel in section.get("panels", []) for y in panel["y"]}
    assert (
        set(metrics) == shown
        and {"train/loss", "gsink/ratio/max", "vscale/lambda_max/layer_1", "train/device/items_per_sec"} <= shown
    )
    names = [s["name"] for s in built["sections"]]
    assert (
        names[:5] == ["Loss", "Attention sink", "Gradient sink", "Activations", "V-scale lambda"]
        and "Per layer" in names
    )
    per_layer = next(s for s in built["sections"] if s["name"] == "Per layer")
    assert {
        "title": "gsink/ratio by layer",
        "y": ["gsink/ratio/layer_0", "gsink/ratio/layer_1", "gsink/ratio/layer_2", "gsink/ratio/layer_3"],
    } in per_layer["panels"]
    built_ws = workspace(built, "me", "vscale")
    assert all(
        panel.groupby == "arm" for section in built_ws.sections for panel in section.panels if hasattr(panel, "groupby")
    )
    assert built_ws.runset_settings.groupby[0].name == "arm"


def test_each_run_logs_the_fields_that_define_its_arm_top_level(experiment):
    hparams = (experiment / "learned-seed0" / "hparams.yaml").read_text()
    assert "arm: learned\n" in hparams and "experiment: tiny\n" in hparams and "model_size: " in hparams


def test_offline_the_spec_is_written_with_the_command_that_creates_it_later(experiment, capsys):
    main(["--experiment", "tiny", "--runs_dir", str(experiment)])
    written = json.loads((experiment / "dashboard.json").read_text())
    assert written == spec("tiny", logged_metrics(experiment))
    assert (
        f"python -m vscale.dashboard --spec {experiment / 'dashboard.json'} --entity <entity> --project vscale"
        in capsys.readouterr().out
    )
