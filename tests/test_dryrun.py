"""The full-size dry run (``python -m common.dryrun``): full hyperparameters on offline mock data of
the real sizes, every training loop cut to a few timed steps, peak memory reported."""
import json
from pathlib import Path

import nbformat
import pytest

from common import config, dryrun

ROOT = Path(__file__).resolve().parent.parent


def test_a_dry_run_keeps_the_full_numbers_and_the_smoke_paths(monkeypatch):
    """Widths, batch sizes and step counts keep their full values (None too: "all of them"); folders,
    weight names and data sources (text on either side) take the smoke ones, so a dry run never
    touches a full run's files or the network."""
    full = dict(width=512, batch_size=128, epochs=50, run_eagerly=False, checkpoint_dir="checkpoints/x",
                vgg_weights="imagenet", attr_batches=None, steps_per_epoch=None)
    smoke = dict(width=8, batch_size=4, epochs=1, run_eagerly=True, checkpoint_dir="/tmp/x",
                 vgg_weights=None, attr_batches=4, steps_per_epoch=1)
    monkeypatch.setenv("HOIG_SMOKE", "1")
    monkeypatch.setenv(config.DRY_VAR, "1")
    hp = config.hparams(full, smoke)
    assert config.mode() == "dry" and config.is_smoke()
    assert (hp.width, hp.batch_size, hp.epochs, hp.run_eagerly) == (512, 128, 50, False)
    assert (hp.checkpoint_dir, hp.vgg_weights) == ("/tmp/x", None)
    assert hp.attr_batches is None and hp.steps_per_epoch is None
    monkeypatch.delenv(config.DRY_VAR)
    assert config.hparams(full, smoke).width == 8 and config.mode() == "smoke"


def test_steps_is_a_range_that_a_dry_run_cuts_to_three_timed_steps(monkeypatch, tmp_path):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(dryrun.LOG_VAR, str(log))
    monkeypatch.delenv(config.DRY_VAR, raising=False)
    assert list(config.steps(7)) == list(range(7)) and not log.exists()
    monkeypatch.setenv(config.DRY_VAR, "1")
    assert list(config.steps(1000, "pixel steps")) == [0, 1, 999]   # the last step's work still happens
    assert list(config.steps(2)) == [0, 1] and list(config.steps(1)) == [0]
    entry = json.loads(log.read_text().splitlines()[0])
    assert entry["label"] == "pixel steps" and entry["planned"] == 1000 and len(entry["step_seconds"]) == 3


PROBE = '''
import keras, numpy as np
from common import config, data
HP = config.hparams(full=dict(batch_size=1000, epochs=7, width=32, checkpoint_dir="checkpoints/probe"),
                    smoke=dict(batch_size=10, epochs=1, width=2, checkpoint_dir="/tmp/probe_smoke"))
ds, _ = data.load("mnist", "test", as_supervised=True)
print("examples", int(ds.cardinality()), "dir", HP.checkpoint_dir)
train = ds.map(lambda x, y: (keras.ops.cast(x, "float32") / 255.0, y)).batch(HP.batch_size)
model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(HP.width),
                          keras.layers.Dense(10)])
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = model.fit(train, epochs=HP.epochs, verbose=0)
assert len(history.history["loss"]) == 1, history.history
arrays = np.zeros((500, 28, 28, 1), "float32"), np.zeros(500, "int32")
model.fit(*arrays, batch_size=100, epochs=HP.epochs, initial_epoch=5, verbose=0)
for _ in config.steps(250, "probe steps"):
    pass
'''


def test_the_dry_run_of_a_notebook_projects_its_full_length_and_measures_memory(tmp_path):
    """A notebook fits on MNIST's test split (mocked with its real 10,000 examples) for 7 epochs of
    10 batches: the dry run takes 3 steps but plans 70; an array fit from epoch 5 of 7 plans 2 x 5;
    a hand-written loop plans 250. The kernel's peak memory is reported, and nothing fails."""
    path = tmp_path / "probe.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE)])
    nbformat.write(nb, path)
    result = dryrun.run_notebook(path, timeout=300)
    assert result["error"] is None, result
    assert [(x["label"], x["planned"], x.get("batch")) for x in result["loops"]] == [
        ("Sequential.fit", 70, None), ("Sequential.fit", 10, 100), ("probe steps", 250, None)]
    assert [len(x["step_seconds"]) for x in result["loops"]] == [3, 3, 3]
    assert all(0 < dryrun.step_time(x) < 60 for x in result["loops"])
    assert 100 * 1024 ** 2 < result["rss"] < 8 * 1024 ** 3
    # TensorFlow's tensor peak: at least one float32 batch of 1,000 images, below the process's RSS
    assert 1000 * 28 * 28 * 4 < result["tensors"] < result["rss"]
    assert dryrun.projected_seconds(result) == pytest.approx(
        sum(dryrun.step_time(x) * x["planned"] for x in result["loops"]))


def test_a_failing_cell_is_reported_with_what_ran_before_it(tmp_path):
    path = tmp_path / "broken.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from common import config\nfor _ in config.steps(9, 'before'):\n    pass\n"
        "raise RuntimeError('the dataset is gone')")]), path)
    result = dryrun.run_notebook(path, timeout=120)
    assert "the dataset is gone" in result["error"]
    assert [x["planned"] for x in result["loops"]] == [9]
    assert dryrun.main([str(path)]) == 1


# Notebooks whose full-size step takes at most ~1 s on 2 cores (and whose dry run under a minute),
# with the length of each training loop of their full run: 20 steps of 50,000 points; 3 seeds x 2
# losses x 4 epochs x 500 steps; 50 epochs of 60,000 / 256 batches, then 3 KL weights x 10 epochs;
# 10 epochs of 60,000 / 128 (drop_remainder) and 500 projection steps (twice); 100,000 steps.
FAST = {"Chapter03/ch03_mode_collapse.ipynb": [20], "Chapter10/ch10_review.ipynb": [2000] * 6,
        "Chapter02/ch02_vae_mnist.ipynb": [11_750] + [2_350] * 3, "Chapter06/ch06_igan.ipynb": [4_680, 500, 500],
        "Chapter08/ch08_sagan.ipynb": [100_000]}


@pytest.mark.dryrun
@pytest.mark.parametrize("notebook", FAST)
def test_fast_notebooks_pass_their_full_size_dry_run(notebook):
    """The dry run of a notebook whose full step is cheap: it completes, each loop plans the full run's
    length, and the kernel stays within the issue's 10 GB (a free Colab runtime has 12.7 GB)."""
    result = dryrun.run_notebook(ROOT / notebook, timeout=600)
    dryrun.report(result)
    assert result["error"] is None
    assert [x["planned"] for x in result["loops"]] == FAST[notebook]
    assert result["rss"] < 10 * 1024 ** 3


NOTEBOOKS = sorted(ROOT.glob("Chapter[0-9][0-9]/*.ipynb"))
TRAINING = ("fit(", "fit_progressive(", "optimize_pixels(", "project_to_latent(")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_states_its_full_run_before_training(path):
    """Each notebook prints its own dry-run figures (full-run time and peak memory) before its first
    training cell, and the figures file holds a measurement for it that fits a free Colab runtime."""
    rel = path.relative_to(ROOT).as_posix()
    cells = [("".join(c["source"]), c["cell_type"]) for c in nbformat.read(path, as_version=4).cells]
    code = [s for s, kind in cells if kind == "code" and not s.startswith("#| export")]
    states = [i for i, s in enumerate(code) if f'dryrun.expected_time("{rel}")' in s]
    trains = [i for i, s in enumerate(code) if any(t in s for t in TRAINING) and "expected_time" not in s]
    assert len(states) == 1, f"{rel} must call dryrun.expected_time({rel!r}) once"
    assert not trains or states[0] < trains[0], f"{rel} states its run time after training starts"
    figures = json.loads(dryrun.FIGURES.read_text())
    assert rel in figures, f"no dry-run figures for {rel}: python -m common.dryrun {rel} --save"
    for machine, f in figures[rel].items():
        assert f["rss"] < 10 * 1024 ** 3, f"{rel} needs {f['rss'] / 1024 ** 3:.1f} GB of RAM on {machine}"
        assert f["tensors"] < 14 * 1024 ** 3, f"{rel}: {f['tensors'] / 1024 ** 3:.1f} GB of tensors on {machine}"
        assert all(x["s_per_step"] > 0 for x in f["loops"]), f
        # every fit gets TensorFlow's FLOP count, from which the notebook guesses its T4 time
        assert all(x.get("flops", 0) > 0 for x in f["loops"] if x["label"].endswith(".fit")), f


def test_expected_time_prints_the_saved_figures(tmp_path, capsys):
    figures = {"ChapterX/x.ipynb": {"2 cores": dict(date="2026-12-01", rss=3 * 1024 ** 3, gpu=None, loops=[
        dict(label="GAN.fit", planned=7200, batch=64, s_per_step=0.5, early_stopping=True),
        dict(label="pixel steps", planned=100, batch=None, s_per_step=36.0)])}}
    path = tmp_path / "figures.json"
    path.write_text(json.dumps(figures))
    assert dryrun.expected_time("ChapterX/x.ipynb", path) == figures["ChapterX/x.ipynb"]
    out = capsys.readouterr().out
    assert "7,300 training steps in 2 loop(s): about 2.0 h" in out and "early stopping" in out
    assert "peak host memory 3.0 GB" in out and "No GPU" in out
    assert "| ChapterX/x.ipynb | 2 cores | 7,300 | 0.5-36 | 2.0 h | ? | 3.0 GB |" in dryrun.table(path)
    assert "T4" not in out, "a loop without a FLOP count: no T4 guess"
    dryrun.expected_time("ChapterY/y.ipynb", path)
    assert "no dry-run figures" in capsys.readouterr().out


def test_the_t4_guess_is_the_steps_flops_at_a_third_of_its_peak(tmp_path, capsys):
    loops = [dict(label="GAN.fit", planned=7200, batch=64, s_per_step=0.5, flops=2.7e12),
             dict(label="GAN.fit", planned=0, batch=64, s_per_step=0.5, flops=None)]  # a finished loop
    assert dryrun.t4_guess(loops) == pytest.approx(7200 * 2.7e12 / 8.1e12 * 3)   # = 7200 s
    assert dryrun.t4_guess(loops[:1] + [dict(loops[0], flops=None)]) is None
    path = tmp_path / "figures.json"
    path.write_text(json.dumps({"X/x.ipynb": {"2 cores": dict(date="2026-12-07", rss=1, gpu=None, loops=loops)}}))
    dryrun.expected_time("X/x.ipynb", path)
    assert "On a Colab T4, our guess: about 2.0 h in float32" in capsys.readouterr().out
    assert "| X/x.ipynb | 2 cores | 7,200 | 0.5 | 1.0 h | 2.0 h |" in dryrun.table(path)


def test_step_flops_counts_what_the_step_runs():
    """A bias-free Dense layer trained with SGD on the mean squared error: the forward product and the
    kernel's gradient are 2 x B x n_in x n_out each; the input's gradient, which the graph holds but
    nothing uses, is not counted."""
    import keras
    import numpy as np

    b, n_in, n_out = 64, 256, 128
    model = keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(n_out, use_bias=False)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x, y = np.ones((2 * b, n_in), "float32"), np.ones((2 * b, n_out), "float32")
    flops = dryrun.step_flops(model, (x, y), batch_size=b)
    products = 4 * b * n_in * n_out
    assert products <= flops < 1.1 * products, flops


def test_the_readme_table_is_the_saved_figures():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert dryrun.table() in readme, "refresh the README table: python -m common.dryrun --table"
