"""`python -m vscale.launch`: one sbatch script per (mode, seed) that Slurm and Lightning agree on;
bad input stops the sweep before anything is written or submitted. No Slurm needed (--dry-run)."""

from pathlib import Path

import pytest

from vscale.launch.sweep import REPO, main, train_command


def dry_run(capsys, *args: str) -> dict[Path, str]:
    """Run the launcher with --dry-run; returns run directory -> rendered script, in print order."""
    main(["--dry-run", *args])
    scripts = {}
    for block in capsys.readouterr().out.split("#### ")[1:]:
        path, _, rest = block.partition("\n")
        script, _, command = rest.rpartition("$ sbatch --parsable ")
        assert command.strip() == path
        scripts[Path(path).parent] = script
    return scripts


def srun_args(script: str) -> list[str]:
    return ["srun", *train_command(script)]


def test_dry_run_prints_one_requeueable_script_per_mode_and_seed(capsys):
    scripts = dry_run(capsys, "--config", "configs/paper-0.1b.yaml", "--gpus-per-node", "8")
    expected = {REPO / "runs" / "paper-0.1b" / f"{m}-seed{s}" for m in ("off", "learned") for s in (0, 1, 2)}
    assert set(scripts) == expected
    for run_dir, script in scripts.items():
        mode, seed = run_dir.name.split("-seed")
        lines = script.splitlines()
        for line in [
            "#SBATCH --nodes=1",
            "#SBATCH --ntasks-per-node=8",
            "#SBATCH --gpus-per-node=8",
            "#SBATCH --requeue",
            "#SBATCH --signal=USR1@90",
            "#SBATCH --open-mode=append",
            f"#SBATCH --output={run_dir}/slurm-%j.out",
            f"#SBATCH --chdir={REPO}",
            f"#SBATCH --job-name=paper-0.1b-{mode}-seed{seed}",
        ]:
            assert line in lines
        args = srun_args(script)
        assert args[:5] == ["srun", "python", "train.py", "fit", "--config"]
        assert {
            "--ckpt_path=last",
            f"--model.vscale={mode}",
            f"--seed_everything={seed}",
            "--trainer.num_nodes=1",
            "--trainer.devices=8",
        } <= set(args)
        assert not (run_dir / "job.sbatch").exists()


def test_a_local_sweep_runs_seed_by_seed_so_that_stopping_it_leaves_whole_pairs(capsys, tmp_path):
    main(
        [
            "--local",
            "--dry-run",
            "--config",
            "configs/tiny.yaml",
            "--gpus-per-node",
            "0",
            "--modes",
            "off",
            "learned",
            "backward",
            "--seeds",
            "0",
            "1",
            "--",
            f"--run.root={tmp_path}",
        ]
    )
    commands = [line for line in capsys.readouterr().out.splitlines() if line.startswith("$ ")]
    runs = [
        (arg.removeprefix("--model.vscale="), seed.removeprefix("--seed_everything="))
        for command in commands
        for arg in command.split()
        if arg.startswith("--model.vscale=")
        for seed in command.split()
        if seed.startswith("--seed_everything=")
    ]
    assert runs == [(m, s) for s in ("0", "1") for m in ("off", "learned", "backward")]


def test_dry_run_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch needed either
    scripts = dry_run(
        capsys, "--config", "configs/paper-0.1b.yaml", "--gpus-per-node", "8", "--", f"--run.root={tmp_path}"
    )
    assert list(scripts)[0] == tmp_path / "paper-0.1b" / "off-seed0"
    assert list(tmp_path.iterdir()) == []


def test_optional_sbatch_lines_appear_only_when_given(capsys):
    bare = dry_run(capsys, "--config", "configs/tiny.yaml", "--gpus-per-node", "1", "--seeds", "0", "--modes", "off")
    full = dry_run(
        capsys,
        "--config",
        "configs/tiny.yaml",
        "--gpus-per-node",
        "1",
        "--seeds",
        "0",
        "--modes",
        "off",
        "--time",
        "2:00:00",
        "--partition",
        "gpu",
        "--account",
        "lab",
        "--cpus-per-task",
        "6",
        "--mem",
        "64G",
    )
    given = [
        "#SBATCH --time=2:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --cpus-per-task=6",
        "#SBATCH --mem=64G",
        "export SRUN_CPUS_PER_TASK=6",
    ]
    (bare,), (full,) = bare.values(), full.values()
    assert all(line in full for line in given)
    assert not any(line.split("=")[0] in bare for line in given)


def test_cpu_job_requests_no_gpu_and_trains_on_cpu(capsys):
    (script,) = dry_run(
        capsys, "--config", "configs/tiny.yaml", "--gpus-per-node", "0", "--seeds", "0", "--modes", "off"
    ).values()
    assert "gpu" not in script.replace("--gpus-per-node 0", "").split("#SBATCH", 1)[1].lower()
    assert "#SBATCH --ntasks-per-node=1" in script.splitlines()
    assert {"--trainer.devices=1", "--trainer.accelerator=cpu"} <= set(srun_args(script))


def test_rendered_srun_line_instantiates_through_the_real_cli(capsys, tmp_path):
    from vscale.train.cli import VScaleCLI

    scripts = dry_run(
        capsys,
        "--config",
        "configs/tiny.yaml",
        "--gpus-per-node",
        "0",
        "--modes",
        "learned",
        "--seeds",
        "1",
        "--",
        f"--run.root={tmp_path}",
        "--trainer.max_steps=7",
    )
    ((run_dir, script),) = scripts.items()
    args = srun_args(script)
    assert args[3:4] == ["fit"] and "--ckpt_path=last" in args
    # run=False parses without subcommands, so drop `fit` and the fit-only --ckpt_path
    cli = VScaleCLI(args=[a for a in args[4:] if a != "--ckpt_path=last"], run=False)
    assert cli.model.hparams.vscale == "learned"
    assert cli.config["seed_everything"] == 1 and cli.datamodule.hparams.seed == 1
    assert (cli.trainer.num_nodes, cli.trainer.num_devices, cli.trainer.max_steps) == (1, 1, 7)
    assert Path(cli.trainer.default_root_dir) == run_dir == tmp_path / "tiny" / "learned-seed1"


@pytest.mark.parametrize(
    "lists", [["softmax,gated", "off,learned", "0"], ["softmax gated", "off learned", "0"]], ids=["commas", "spaces"]
)
def test_attention_arms_times_modes_times_seeds_give_one_named_job_each(capsys, lists):
    arms, modes, seeds = (value.split(" ") for value in lists)
    scripts = dry_run(
        capsys,
        "--config",
        "configs/tiny.yaml",
        "--gpus-per-node",
        "0",
        "--attention",
        *arms,
        "--modes",
        *modes,
        "--seeds",
        *seeds,
    )
    names = ["off-seed0", "learned-seed0", "gated-off-seed0", "gated-learned-seed0"]
    assert [run_dir.name for run_dir in scripts] == names
    for run_dir, script in scripts.items():
        arm = "gated" if run_dir.name.startswith("gated") else "softmax"
        mode = run_dir.name.removeprefix("gated-").split("-seed")[0]
        assert {f"--model.attention={arm}", f"--model.vscale={mode}"} <= set(srun_args(script))
        assert f"#SBATCH --job-name=tiny-{run_dir.name}" in script.splitlines()


def test_without_attention_the_configs_arm_is_swept(capsys, tmp_path):
    import yaml

    config = yaml.safe_load(open("configs/tiny.yaml"))
    config["model"]["attention"] = "kv_bias"
    path = tmp_path / "kv.yaml"
    path.write_text(yaml.safe_dump(config))
    scripts = dry_run(capsys, "--config", str(path), "--gpus-per-node", "0", "--modes", "off", "--seeds", "0")
    assert [run_dir.name for run_dir in scripts] == ["kv_bias-off-seed0"]


def refused_choice(capsys, root, *choice: str) -> str:
    """A local launch of configs/tiny.yaml given a bad `choice` (a flag and its values): exit 2, nothing written
    under `root`; returns stderr."""
    with pytest.raises(SystemExit) as stop:
        main(["--config", "configs/tiny.yaml", "--gpus-per-node", "0", *choice, "--", f"--run.root={root}"])
    assert stop.value.code == 2
    assert list(root.iterdir()) == []
    return capsys.readouterr().err


def test_unknown_attention_arm_is_refused_naming_the_flag(capsys, tmp_path):
    err = refused_choice(capsys, tmp_path, "--attention", "gated,softmax1")
    assert "--attention" in err and "softmax1" in err and "sink_logit" in err


def test_two_nodes_pick_the_multi_node_template(capsys):
    scripts = dry_run(
        capsys, "--config", "configs/paper-1b.yaml", "--nodes", "2", "--gpus-per-node", "8", "--seeds", "0"
    )
    assert len(scripts) == 2
    for script in scripts.values():
        assert "on several nodes" in script
        assert {"#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8"} <= set(script.splitlines())
        assert {"--trainer.num_nodes=2", "--trainer.devices=8"} <= set(srun_args(script))


def test_unknown_mode_exits_non_zero_naming_the_flag_before_writing(tmp_path, capsys):
    stderr = refused_choice(capsys, tmp_path, "--modes", "off", "on")
    assert "--modes" in stderr and "learned" in stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--nodes", "0", "--gpus-per-node", "8"], "--nodes 0: must be at least 1"),
        (["--gpus-per-node", "-1"], "--gpus-per-node -1: must be at least 0"),
        (["--gpus-per-node", "8", "--template", "nope"], "--template nope: no such file"),
        (
            ["--gpus-per-node", "8", "--nodes", "2", "--template", "single-node"],
            "#SBATCH --nodes=1 but --nodes gives the trainer 2",
        ),
        (["--gpus-per-node", "8", "--", "--seed_everything=3"], "use --seeds"),
        (["--gpus-per-node", "8", "--", "--dry-run"], "put launcher options before --"),
    ],
    ids=[
        "nodes-0",
        "negative-gpus",
        "missing-template",
        "template-contradicts-nodes",
        "override-set-by-launcher",
        "launcher-option-after-separator",
    ],
)
def test_bad_input_exits_non_zero_naming_the_flag_before_writing(capsys, tmp_path, args, message):
    root = [f"--run.root={tmp_path}"] if "--" in args else ["--", f"--run.root={tmp_path}"]
    with pytest.raises(SystemExit) as exit_:
        main(["--config", "configs/paper-0.1b.yaml", *args, *root])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_missing_config_names_the_flag(capsys):
    with pytest.raises(SystemExit):
        main(["--config", "configs/nope.yaml", "--gpus-per-node", "8", "--dry-run"])
    assert "--config configs/nope.yaml: no such file" in capsys.readouterr().err


def test_submitting_without_sbatch_on_path_is_refused_before_writing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(SystemExit):
        main(["--config", "configs/paper-0.1b.yaml", "--gpus-per-node", "8", "--", f"--run.root={tmp_path / 'runs'}"])
    assert "sbatch is not on PATH" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_gpu_counts_that_do_not_divide_the_global_batch_are_refused_before_submitting(capsys):
    with pytest.raises(SystemExit):
        main(["--dry-run", "--config", "configs/paper-0.1b.yaml", "--gpus-per-node", "3"])
    err = capsys.readouterr().err
    assert (
        "--gpus-per-node 3" in err
        and "data.global_batch=512 is not divisible by data.batch_size=32 x 3 device(s)" in err
    )


def test_jobs_leave_the_accumulation_to_the_global_batch(capsys):
    for script in dry_run(capsys, "--config", "configs/paper-1b.yaml", "--nodes", "2", "--gpus-per-node", "8").values():
        assert not any("accumulate_grad_batches" in arg for arg in srun_args(script))


def test_a_sweep_on_prepared_data_that_does_not_exist_is_refused_before_submitting(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(
            [
                "--local",
                "--config",
                "configs/paper-0.1b.yaml",
                "--gpus-per-node",
                "8",
                "--",
                f"--data.prepared={tmp_path / 'absent'}",
            ]
        )
    assert "is not prepared yet" in capsys.readouterr().err


def test_the_dry_run_shows_the_batch_arithmetic_and_warns_of_data_not_prepared(capsys, tmp_path):
    main(
        [
            "--dry-run",
            "--config",
            "configs/paper-1b.yaml",
            "--nodes",
            "2",
            "--gpus-per-node",
            "8",
            "--seeds",
            "0",
            "--",
            f"--data.prepared={tmp_path / 'c4'}",
        ]
    )
    out = capsys.readouterr().out
    assert (
        "global batch per job: data.batch_size 8 x 16 device(s) (2 node(s) x 8) x accumulate_grad_batches 4 (derived) "
        "= 512 rows per optimizer step"
    ) in out
    assert f"warning: data.prepared='{tmp_path / 'c4'}' is not prepared yet" in out
    assert f"python -m vscale.prepare --config configs/paper-1b.yaml --out {tmp_path / 'c4'}" in out
