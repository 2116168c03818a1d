"""Several devices: every training notebook builds its models under ``config.distribution_strategy()``.

Without a GPU, the tests split this machine's CPU into two logical devices and set
``HOIG_CPU_REPLICAS=2``: the strategy is then a ``MirroredStrategy`` over both, as it would be over
two GPUs. A network, training model or optimizer created outside the strategy's scope makes
``fit`` fail (or train on one replica), so executing a notebook this way checks what the strategy
needs, and the models it leaves behind show where their variables live."""
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# notebook -> replicas its trained models must run on in smoke mode; pix2pix and BicycleGAN train
# with the book's batch of 1, which two devices cannot share, so they keep one device
TRAINING = {
    "Chapter01/ch01_pixelcnn.ipynb": 2,
    "Chapter02/ch02_autoencoder.ipynb": 2,
    "Chapter02/ch02_vae_faces.ipynb": 2,
    "Chapter02/ch02_vae_mnist.ipynb": 2,
    "Chapter03/ch03_dcgan.ipynb": 2,
    "Chapter03/ch03_mode_collapse.ipynb": 2,
    "Chapter03/ch03_wgan.ipynb": 2,
    "Chapter03/ch03_wgan_gp.ipynb": 2,
    "Chapter03/ch03_wgan_gp_celeba.ipynb": 2,
    "Chapter04/ch04_bicyclegan.ipynb": 1,
    "Chapter04/ch04_cgan.ipynb": 2,
    "Chapter04/ch04_cyclegan_facades.ipynb": 2,
    "Chapter04/ch04_cyclegan_horse2zebra.ipynb": 2,
    "Chapter04/ch04_pix2pix.ipynb": 1,
    "Chapter05/ch05_adain.ipynb": 2,
    "Chapter06/ch06_gaugan.ipynb": 2,
    "Chapter06/ch06_igan.ipynb": 2,
    "Chapter07/ch07_progan.ipynb": 2,
    "Chapter07/ch07_stylegan.ipynb": 2,
    "Chapter07/ch07_stylegan_explore.ipynb": 2,
    "Chapter08/ch08_biggan.ipynb": 2,
    "Chapter08/ch08_sagan.ipynb": 2,
    "Chapter09/ch09_deepfake.ipynb": 2,
    "Chapter10/ch10_review.ipynb": 2,
}
# one-step checks that a notebook runs by hand on one device before training (not trained by fit)
CHECKS = {"trial", "latent_only", "check_gan", "probe"}

_SPLIT = ("import tensorflow as _tf\n"
          "_tf.config.set_logical_device_configuration(_tf.config.list_physical_devices('CPU')[0],\n"
          "                                            [_tf.config.LogicalDeviceConfiguration()] * 2)")
# every compiled Keras model the notebook leaves in its namespace, with where its variables live
_REPORT = textwrap.dedent("""
    import json as _json, keras as _keras
    def _where(m):
        s = m.distribute_strategy
        return dict(strategy=type(s).__name__, replicas=s.num_replicas_in_sync,
                    variables=sorted({type(getattr(v, "value", v)).__name__ for v in m.trainable_variables}))
    _found = {}
    for _n, _v in list(globals().items()):
        for _k, _m in (_v.items() if isinstance(_v, dict) else [(None, _v)]):  # models kept in a dict too
            if isinstance(_m, _keras.Model) and getattr(_m, "compiled", False) and not _n.startswith("_"):
                _found[_n if _k is None else f"{_n}[{_k!r}]"] = _where(_m)
    print("MODELS" + _json.dumps(_found))
""")


def _code(path):
    nb = json.loads((ROOT / path).read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def _trains(path) -> bool:
    return any(re.search(r"\.fit\(|fit_progressive\(", s) for s in _code(path)
               if not s.startswith("#| export"))


def test_every_training_notebook_is_listed():
    notebooks = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("Chapter*/*.ipynb"))
    assert sorted(p for p in notebooks if _trains(p)) == sorted(TRAINING)


@pytest.mark.parametrize("path", sorted(TRAINING))
def test_the_notebook_asks_config_for_its_strategy(path):
    code = "\n".join(_code(path))
    assert "config.distribution_strategy(" in code and ".scope():" in code
    assert "MirroredStrategy(" not in code, "create the strategy with config.distribution_strategy()"


_RULE = textwrap.dedent("""
    import json, os
    from common import config
    os.environ["HOIG_CPU_REPLICAS"] = "2"
    try:
        config.distribution_strategy()
        unsplit = None
    except RuntimeError as exc:
        unsplit = str(exc)
    print("RULE" + json.dumps(dict(unsplit=unsplit)))
""")


def test_cpu_replicas_need_a_split_cpu_and_a_batch_that_splits(tmp_path):
    """``HOIG_CPU_REPLICAS=2`` without two logical CPUs is an error that says what to do; with them,
    an even batch (or none given) mirrors over both, an odd batch keeps one device."""
    env = {**os.environ, "HOIG_CPU_REPLICAS": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", _RULE], capture_output=True, text=True, env=env,
                         cwd=ROOT, check=True).stdout
    unsplit = json.loads(out.split("RULE", 1)[1])["unsplit"]
    assert unsplit and "set_logical_device_configuration" in unsplit and "HOIG_CPU_REPLICAS=2" in unsplit
    split = _SPLIT + textwrap.dedent("""
        import json
        from common import config
        out = {str(b): (type(s).__name__, s.num_replicas_in_sync) for b in (None, 4, 3, 1)
               for s in [config.distribution_strategy(b)]}
        print("SPLIT" + json.dumps(out))
    """)
    run = subprocess.run([sys.executable, "-c", split], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**os.environ, "HOIG_CPU_REPLICAS": "2", "TF_CPP_MIN_LOG_LEVEL": "3"})
    got = json.loads(run.stdout.split("SPLIT", 1)[1])
    assert got["None"] == got["4"] == ["MirroredStrategy", 2]
    assert got["3"][1] == got["1"][1] == 1
    assert "a batch of 3 does not split evenly between 2 devices" in run.stdout


@pytest.mark.replicas
@pytest.mark.parametrize("path", sorted(TRAINING))
def test_the_notebook_trains_on_two_replicas(path, monkeypatch):
    """Smoke mode on two logical CPUs: the notebook runs to its end, and every model it compiled for
    training (not the one-step checks) has its variables mirrored on both replicas (or, for a batch of
    1, lives on one device)."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("HOIG_SMOKE", "1")
    monkeypatch.setenv("HOIG_CPU_REPLICAS", "2")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(ROOT / path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(_SPLIT))
    nb.cells.append(nbformat.v4.new_code_cell(_REPORT))
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str((ROOT / path).parent)}}).execute()
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    models = {n: m for n, m in json.loads(out.split("MODELS", 1)[1]).items() if n not in CHECKS}
    assert models, "no compiled model left in the notebook's namespace"
    replicas = TRAINING[path]
    for name, where in models.items():
        assert where["replicas"] == replicas, f"{name} was compiled outside the strategy's scope: {where}"
        if replicas > 1:
            assert where["variables"] == ["MirroredVariable"], f"{name} has variables outside the scope: {where}"
