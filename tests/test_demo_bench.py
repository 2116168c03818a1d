"""The demo command's promise (a PNG and a likelihood better than a coin) and the benchmark."""

from common import bench, demo


def test_demo_beats_the_uniform_baseline_and_writes_png(tmp_path):
    result = demo.main(["--epochs", "4", "--samples", "8", "--out", str(tmp_path)])
    assert result["test_bits"] < result["uniform_bits"] == 1.0
    png = tmp_path / "pixelcnn_digits.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"


def test_benchmark_measures_every_mode():
    """Graph vs XLA and float32 vs mixed precision, side by side; the global dtype policy that the
    mixed modes set is restored afterwards."""
    import keras

    rows = bench.run(["pixelcnn", "dcgan"], steps=1, batch_size=2)
    assert [r["mode"] for r in rows] == ["eager", "tf.function", "XLA", "mixed", "mixed+XLA"] * 2
    assert all(r["images_per_s"] > 0 and r["batch"] == 2 for r in rows)
    assert keras.config.dtype_policy().name == "float32"
