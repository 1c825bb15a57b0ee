"""A run's identity (vscale.runs): the name train.py writes is the one eval.py and the launcher read back."""

from pathlib import Path

import pytest
from conftest import QUIET

from vscale.runs import RunConfig, arm_of, run_name, seed_of


@pytest.mark.parametrize(
    "attention, mode, seed, arm", [("softmax", "off", 0, "off"), ("gated", "learned", 12, "gated-learned")]
)
def test_a_run_name_reads_back_as_its_arm_and_seed(attention, mode, seed, arm):
    name = run_name(mode, seed, attention)
    assert (arm_of(name), seed_of(name)) == (arm, seed)


def test_a_name_without_a_seed_suffix_is_its_own_arm_and_has_no_seed():
    assert (arm_of("baseline"), seed_of("baseline")) == ("baseline", None)


def test_the_run_section_names_the_directory_unless_it_gives_a_name(tmp_path):
    default = RunConfig(root=str(tmp_path), experiment="bb").identity("off", 3, "softpick")
    named = RunConfig(root=str(tmp_path), experiment="bb", name="pilot").identity("off", 3, "softpick")
    assert default.dir == tmp_path / "bb" / "softpick-off-seed3" and default.arm == "softpick-off"
    assert named.dir == tmp_path / "bb" / "pilot" and named.arm == "pilot"


def test_train_writes_where_the_identity_it_computed_from_the_config_says(tmp_path):
    from vscale.train.cli import VScaleCLI

    cli = VScaleCLI(
        args=[
            "--config",
            "configs/tiny.yaml",
            f"--run.root={tmp_path}",
            "--model.attention=gated",
            "--model.vscale=learned",
            "--seed_everything=4",
            *QUIET,
        ],
        run=False,
    )
    assert cli.run_id.dir == tmp_path / "tiny" / "gated-learned-seed4" == Path(cli.trainer.default_root_dir)
    assert Path(cli.trainer.loggers[0].log_dir) == cli.run_id.dir and cli.run_id.arm == "gated-learned"
