import pickle
import time

import numpy as np
import pytest
import torch

import resnet.data
from jobs.errors import UserError
from resnet.data import Dataset, channel_stats, load_cifar10, make_synthetic, split_train_val
from tests.cifar_fixtures import TRAIN_FILES, file_md5, make_tarball, py2_pickle, write_batch, write_fake_cifar


def raw(batch_dir, names):
    """The batches as written, decoded independently of the reader."""
    batches = [pickle.loads((batch_dir / n).read_bytes(), encoding="bytes") for n in names]
    return np.concatenate([b[b"data"] for b in batches]), np.concatenate([b[b"labels"] for b in batches])


@pytest.fixture
def cifar_dir(tmp_path):
    return write_fake_cifar(tmp_path / "data")


@pytest.mark.parametrize("form", ["dir", "parent", "tarball", "parent-of-tarball"])
def test_reads_the_batch_dir_its_parent_and_the_tarball(cifar_dir, form, monkeypatch):
    if form == "dir":
        path = cifar_dir
    elif form == "parent":
        path = cifar_dir.parent
    else:
        path = make_tarball(cifar_dir, cifar_dir.parent.parent / "cifar-10-python.tar.gz")
        monkeypatch.setattr(resnet.data, "CIFAR10_TAR_MD5", file_md5(path))
        path = path.parent if form == "parent-of-tarball" else path
    train, test = load_cifar10(str(path) if form == "parent" else path)

    assert (len(train), len(test)) == (100, 20)
    for ds, names in ((train, TRAIN_FILES), (test, ["test_batch"])):
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (len(ds), 3, 32, 32)
        assert ds.labels.dtype == torch.int64
        data, labels = raw(cifar_dir, names)
        assert np.array_equal(ds.images.reshape(len(ds), -1).numpy(), data)
        assert np.array_equal(ds.labels.numpy(), labels)


def test_pixels_are_r_g_b_planes_of_32_rows(cifar_dir):
    data = np.zeros((20, 3072), np.uint8)
    y, x = 5, 7  # row 5, column 7
    data[3, [y * 32 + x, 1024 + y * 32 + x, 2048 + y * 32 + x]] = [11, 22, 33]
    write_batch(cifar_dir / "data_batch_2", data, [4] * 20)
    train, _ = load_cifar10(cifar_dir)
    image = train.images[20 + 3]  # batches in order 1..5: image 3 of batch 2
    assert image[:, y, x].tolist() == [11, 22, 33]
    assert int(image.sum()) == 66 and int(train.labels[23]) == 4


def test_the_official_md5_rejects_another_tarball(cifar_dir):
    tarball = make_tarball(cifar_dir)
    with pytest.raises(UserError, match="md5") as err:
        load_cifar10(tarball)
    assert str(tarball) in str(err.value) and resnet.data.CIFAR10_TAR_MD5 in str(err.value)
    assert file_md5(tarball) in str(err.value)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate member", "test_batch: truncated or corrupt"),
        ("drop member", "data_batch_4: .*missing"),
        ("truncate tarball", "truncated or corrupt|cannot read the tarball"),
    ],
)
def test_damaged_tarball_names_the_problem(cifar_dir, monkeypatch, damage, message):
    if damage == "truncate member":
        path = cifar_dir / "test_batch"
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "drop member":
        (cifar_dir / "data_batch_4").unlink()
    tarball = make_tarball(cifar_dir)
    if damage == "truncate tarball":
        tarball.write_bytes(tarball.read_bytes()[:-3000])
    monkeypatch.setattr(resnet.data, "CIFAR10_TAR_MD5", file_md5(tarball))
    with pytest.raises(UserError, match=message) as err:
        load_cifar10(tarball)
    assert str(tarball) in str(err.value)


def test_a_file_that_is_no_tarball_says_what_to_give(cifar_dir):
    with pytest.raises(UserError, match="data_batch_1: not a tarball; give the cifar-10-batches-py directory"):
        load_cifar10(cifar_dir / "data_batch_1")


def test_truncated_batch_names_the_file(cifar_dir):
    path = cifar_dir / "data_batch_3"
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(UserError, match="truncated or corrupt") as err:
        load_cifar10(cifar_dir)
    assert str(path) in str(err.value)


def test_missing_batch_names_the_file(cifar_dir):
    (cifar_dir / "data_batch_5").unlink()
    with pytest.raises(UserError, match="data_batch_5.*missing"):
        load_cifar10(cifar_dir)


@pytest.mark.parametrize("name", ["nowhere", "empty-dir"])
def test_missing_data_is_a_user_error(tmp_path, name):
    path = tmp_path / name
    if name == "empty-dir":
        path.mkdir()
    with pytest.raises(UserError, match=name):
        load_cifar10(path)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


GOOD = np.zeros((4, 3072), np.uint8)
BAD_BATCHES = {
    "garbage": (b"this is not a pickle", "truncated or corrupt"),
    "not a dict": (py2_pickle([1, 2, 3]), "a list, expected a dict"),
    "no data": (py2_pickle({b"labels": [0] * 4}), "no b'data'"),
    "no labels": (py2_pickle({b"data": GOOD}), "no b'labels'"),
    "str keys": (pickle.dumps({"data": GOOD, "labels": [0] * 4}), "no b'data'"),
    "float data": (py2_pickle({b"data": GOOD.astype(np.float32), b"labels": [0] * 4}), "float32 array"),
    "list data": (py2_pickle({b"data": GOOD.tolist(), b"labels": [0] * 4}), "found a list"),
    "wrong width": (py2_pickle({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4}), "3000"),
    "label 10": (py2_pickle({b"data": GOOD, b"labels": [0, 1, 2, 10]}), "0..10, expected 0..9"),
    "label -1": (py2_pickle({b"data": GOOD, b"labels": [0, 1, 2, -1]}), "-1..2, expected 0..9"),
    "float labels": (py2_pickle({b"data": GOOD, b"labels": [0.5] * 4}), "not a list of integers"),
    "3 labels": (py2_pickle({b"data": GOOD, b"labels": [0, 1, 2]}), "3 labels for 4 images"),
    "code": (pickle.dumps({b"data": GOOD, b"labels": Evil()}), "asks to run builtins.print"),
}


@pytest.mark.parametrize("kind", BAD_BATCHES)
def test_bad_batches_name_the_file(cifar_dir, kind, capsys):
    path = cifar_dir / "data_batch_1"
    content, message = BAD_BATCHES[kind]
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as err:
        load_cifar10(cifar_dir)
    assert str(path) in str(err.value)
    assert "pwned" not in capsys.readouterr().out


def test_split_is_a_fixed_partition():
    n = 100
    full = Dataset(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 32, 32), torch.arange(n))
    train, val = split_train_val(full, val_size=30, seed=0)
    assert (len(train), len(val)) == (70, 30)
    assert sorted(torch.cat([train.labels, val.labels]).tolist()) == list(range(n))
    assert torch.equal(train.images[:, 2, 31, 31], train.labels.to(torch.uint8))  # rows stay paired
    again_train, again_val = split_train_val(full, val_size=30, seed=0)
    assert torch.equal(again_val.labels, val.labels) and torch.equal(again_train.images, train.images)
    assert not torch.equal(split_train_val(full, val_size=30, seed=1)[1].labels, val.labels)
    assert len(split_train_val(full, val_size=0)[1]) == 0


@pytest.mark.parametrize("val_size", [100, 101, -1])
def test_impossible_split_is_a_user_error(val_size):
    full = Dataset(torch.zeros(100, 3, 32, 32, dtype=torch.uint8), torch.zeros(100, dtype=torch.int64))
    with pytest.raises(UserError, match=str(val_size)):
        split_train_val(full, val_size=val_size)


def test_synthetic_shapes_labels_and_balance():
    train, test = make_synthetic(205, seed=0)
    assert (len(train), len(test)) == (205, 41)
    assert len(make_synthetic(12, seed=0)[1]) == 10
    for ds in (train, test):
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (len(ds), 3, 32, 32)
        assert ds.labels.dtype == torch.int64
        counts = torch.bincount(ds.labels, minlength=10)
        assert len(counts) == 10 and int(counts.max() - counts.min()) <= 1
    assert 0 < float(train.images.float().std()) and int(train.images.max()) > int(train.images.min())


def test_synthetic_is_deterministic_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a_train, a_test = make_synthetic(100, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b_train, b_test = make_synthetic(100, seed=3)
    assert torch.equal(a_train.images, b_train.images) and torch.equal(a_train.labels, b_train.labels)
    assert torch.equal(a_test.images, b_test.images) and torch.equal(a_test.labels, b_test.labels)
    assert not torch.equal(make_synthetic(100, seed=4)[0].images, a_train.images)


def test_synthetic_classes_are_learnable_but_not_trivial():
    # Nearest class mean on 8x8 thumbnails: far above chance, yet some images stay ambiguous.
    train, test = make_synthetic(2000, seed=0)

    def thumbs(ds: Dataset) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(ds.images.float(), 4).flatten(1)

    means = torch.stack([thumbs(train)[train.labels == c].mean(0) for c in range(10)])
    accuracy = (torch.cdist(thumbs(test), means).argmin(1) == test.labels).float().mean().item()
    assert 0.5 < accuracy < 0.95


def test_synthetic_is_vectorized():
    start = time.process_time()  # CPU time: other processes' load does not count
    train, test = make_synthetic(10_000, seed=0)
    assert (len(train), len(test)) == (10_000, 2_000)
    assert time.process_time() - start < 1.5  # about 0.3 s on one core; a per-image loop takes far longer


def test_channel_stats_match_a_float64_computation():
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images[:, 2] = 51  # constant channel: mean 0.2, std 0
    mean, std = channel_stats(images)
    assert mean.dtype == std.dtype == torch.float32 and mean.shape == std.shape == (3,)
    x = images.double() / 255
    torch.testing.assert_close(mean, x.mean(dim=(0, 2, 3)).float())
    torch.testing.assert_close(std, x.std(dim=(0, 2, 3), unbiased=False).float())
    assert std[2].item() == 0 and mean[2].item() == pytest.approx(0.2)
