"""Dataset loaders in smoke mode, and the one-sentence error of a full run offline."""

import socket

import numpy as np
import pytest
import tensorflow as tf

from common import config, data


def test_binarize_threshold_and_dtypes():
    image = tf.constant(np.arange(256, dtype=np.uint8).reshape(16, 16, 1))
    x, y = data.binarize(image, tf.constant(3))
    x, y = x.numpy().ravel(), y.numpy().ravel()
    assert x.dtype == np.float32 and y.dtype == np.int32
    assert np.all(x[:128] == 0) and np.all(x[128:] == 1)
    np.testing.assert_array_equal(x, y)


def test_mnist_binary_smoke_batches():
    assert config.is_smoke()
    train, test = data.load_mnist_binary(batch_size=16, smoke_examples=40)
    x, y = next(iter(train))
    assert x.shape == (16, 28, 28, 1) and x.dtype == tf.float32
    assert y.shape == (16, 28, 28, 1) and y.dtype == tf.int32
    assert set(np.unique(x.numpy())) <= {0.0, 1.0}
    assert int(train.cardinality()) == 3 and int(test.cardinality()) == 3


def test_celeba_images_and_attributes_smoke():
    images, attributes = data.load_celeba_images("test", n=12, batch=5)
    assert images.shape == (12, 218, 178, 3) and images.dtype == np.uint8
    assert list(attributes) == data.CELEBA_ATTRIBUTES and len(attributes) == 40
    assert all(v.dtype == bool and v.shape == (12,) for v in attributes.values())


def test_digits_are_real_and_binary():
    x_train, x_test = data.load_digits_binary()
    assert x_train.shape[1:] == (8, 8, 1) and len(x_train) + len(x_test) == 1797
    assert set(np.unique(x_train)) == {0.0, 1.0}
    assert 0.2 < x_train.mean() < 0.6  # real strokes, not noise or blanks


def test_pipeline_batches_and_shuffles():
    ds = tf.data.Dataset.range(10)
    batches = [b.numpy().tolist() for b in data.pipeline(ds, 4, shuffle=10, seed=1)]
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(sum(batches, [])) == list(range(10))


# ---------------------------------------------------------------- full run, no network
@pytest.fixture
def full_mode(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "0")
    assert not config.is_smoke()


def _offline(*_args, **_kwargs):
    raise socket.gaierror(-2, "Name or service not known")


def test_full_run_offline_gives_one_clear_sentence(full_mode, monkeypatch, tmp_path):
    monkeypatch.setattr(socket, "getaddrinfo", _offline)
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.load("mnist", "train", data_dir=tmp_path)
    message = str(err.value)
    assert "'mnist'" in message and "no network connection" in message
    assert message.count(".") >= 1 and "\n" not in message


def test_celeba_offline_message_says_where_to_put_the_files(full_mode, monkeypatch, tmp_path):
    monkeypatch.setattr(socket, "getaddrinfo", _offline)
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.load_celeba_images("test", n=4, data_dir=tmp_path)
    message = str(err.value)
    assert "'celeb_a'" in message and "img_align_celeba.zip" in message
    assert str(tmp_path / "downloads" / "manual") in message


def test_failed_download_is_wrapped(full_mode, monkeypatch, tmp_path):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(data, "_can_reach", lambda host, **kw: True)

    def broken(self, *args, **kwargs):
        raise ConnectionError("quota exceeded")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", broken)
    with pytest.raises(data.DatasetUnavailableError, match="ConnectionError while downloading") as err:
        data.load("fashion_mnist", "train", data_dir=tmp_path)
    assert isinstance(err.value.__cause__, ConnectionError)
