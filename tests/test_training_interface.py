"""How training talks to people and to Python: readable progress lines, arguments from Python or argv."""

from transformers import ProgressCallback

from loscat_hf.taxonomy import load_taxonomy
from loscat_hf.training.parse import parse_train_args
from loscat_hf.training.progress import ReadableProgressCallback, format_log
from loscat_hf.training.run import build_trainer


def test_log_line_names_rounds_and_drops_clutter():
    line = format_log({"loss": 2.4763, "grad_norm": 1.8141, "learning_rate": 2.883e-05, "epoch": 0.4545,
                       "total_flos": 1e12})
    assert line == "epoch 0.45  loss 2.476  lr 2.88e-05  grad norm 1.814"
    line = format_log({"eval_loss": 2.515, "eval_macro_f1": 0.015384, "eval_runtime": 1.2,
                       "eval_samples_per_second": 70.1, "eval_steps_per_second": 2.0, "epoch": 1.0})
    assert line == "epoch 1.00  val loss 2.515  val macro-F1 0.015"


def test_the_trainer_reports_through_the_readable_callback(tiny_dataset, tmp_path, capsys):
    largs, targs = parse_train_args(["--dataset", str(tiny_dataset), "--output-dir", str(tmp_path / "o"),
                                     "--model", "tiny", "--image-size", "32", "--dataloader-num-workers", "0",
                                     "--max-steps", "2", "--logging-steps", "1", "--eval-strategy", "no",
                                     "--save-strategy", "no", "--load-best-model-at-end", "false",
                                     "--disable-tqdm", "false"])
    trainer, _ = build_trainer(largs, targs, load_taxonomy())
    kinds = [type(cb) for cb in trainer.callback_handler.callbacks]
    assert ReadableProgressCallback in kinds and ProgressCallback not in kinds
    trainer.train()
    captured = capsys.readouterr()
    assert "loss" in captured.err and "{'loss'" not in captured.err + captured.out
    assert "loss" not in captured.out  # stdout is left for results


def test_train_arguments_from_python_match_the_command_line(tmp_path):
    """The Python way to the arguments `loscat-hf train` builds: same defaults, same checks."""
    import pytest

    from loscat_hf.errors import LoscatError
    from loscat_hf.training.parse import train_arguments

    largs, targs = train_arguments(dataset="ds", output_dir=str(tmp_path / "m"), model="tiny",
                                   num_train_epochs=3)
    cli_l, cli_t = parse_train_args(["--dataset", "ds", "--output-dir", str(tmp_path / "m"),
                                     "--model", "tiny", "--num-train-epochs", "3"])
    assert largs == cli_l and targs.to_dict() == cli_t.to_dict()
    assert targs.label_smoothing_factor == 0.1 and not targs.remove_unused_columns  # the task's defaults
    with pytest.raises(LoscatError, match="unknown training arguments: learning_rat"):
        train_arguments(dataset="ds", output_dir=str(tmp_path / "m"), learning_rat=1e-3)
    with pytest.raises(LoscatError, match="^sampling_power must be between"):  # the parameter, not the flag
        train_arguments(dataset="ds", output_dir=str(tmp_path / "m"), sampling_power=2.0)


def test_bad_arguments_are_one_line_errors_from_python_and_argv(tmp_path):
    """A config passed from Python is read like --config; a bad value or a missing --output-dir is a
    LoscatError (the CLI's one-line exit 2), never argparse's usage dump and SystemExit."""
    import pytest

    from loscat_hf.errors import LoscatError
    from loscat_hf.training.parse import train_arguments

    cfg = tmp_path / "c.yaml"
    cfg.write_text("num_train_epochs: 7\nsampling_power: 0.5\n")
    largs, targs = train_arguments(dataset="ds", output_dir=str(tmp_path / "m"), config=str(cfg))
    assert (targs.num_train_epochs, largs.sampling_power) == (7, 0.5)
    largs, targs = train_arguments(dataset="ds", output_dir=str(tmp_path / "m"), config=str(cfg),
                                   num_train_epochs=2)
    assert targs.num_train_epochs == 2  # options override the config, as the command line does
    with pytest.raises(LoscatError, match="invalid float value: 'abc'"):
        train_arguments(dataset="ds", output_dir=str(tmp_path / "m"), num_train_epochs="abc")
    with pytest.raises(LoscatError, match="invalid float value: 'abc'"):
        parse_train_args(["--dataset", "ds", "--output-dir", str(tmp_path / "m"),
                          "--num-train-epochs", "abc"])
    with pytest.raises(LoscatError, match="^output_dir is required"):
        parse_train_args(["--dataset", "ds"])
    with pytest.raises(LoscatError, match="expected one argument"):
        parse_train_args(["--dataset", "ds", "--output-dir", str(tmp_path / "m"), "--config"])
