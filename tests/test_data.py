import gzip
import hashlib
import struct

import pytest
import torch

from vision_core.data import DatasetMissingError, balanced_subset, load_mnist, read_idx

# md5 of the uncompressed IDX files, from data/mnist/README.md
MD5 = {"train": "6bbc9ace898e44ae57da46a324031adb", "test": "2646ac647ad5339dbf082846283269ea"}


@pytest.mark.parametrize(("split", "count"), [("train", 60_000), ("test", 10_000)])
def test_mnist_is_complete_and_intact(split, count, root):
    data = load_mnist(split)
    assert data.images.shape == (count, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels.shape == (count,) and data.labels.dtype == torch.int64
    assert set(data.labels.unique().tolist()) == set(range(10))
    name = "train-images-idx3-ubyte.gz" if split == "train" else "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress((root / "data" / "mnist" / name).read_bytes())
    assert hashlib.md5(raw).hexdigest() == MD5[split]


def test_truncated_or_foreign_idx_files_are_refused(tmp_path):
    header = struct.pack(">IIII", 2051, 2, 28, 28)
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(gzip.compress(header + bytes(28 * 28)))  # one image where two are declared
    with pytest.raises(ValueError, match="expected"):
        read_idx(truncated)
    foreign = tmp_path / "foreign.gz"
    foreign.write_bytes(gzip.compress(b"\x89PNG\r\n\x1a\n" + bytes(100)))
    with pytest.raises(ValueError, match="not an IDX"):
        read_idx(foreign)


def test_missing_files_say_what_to_do(tmp_path):
    with pytest.raises(DatasetMissingError, match=r"data/mnist/README\.md"):
        load_mnist("test", root=tmp_path)


@pytest.mark.parametrize("size", [600, 1_800, 6_000])
def test_balanced_subsets_are_balanced_and_seeded(size):
    labels = load_mnist("train").labels
    subset = balanced_subset(labels, size, seed=7)
    assert len(subset) == size == len(subset.unique())
    assert torch.bincount(labels[subset], minlength=10).tolist() == [size // 10] * 10
    assert torch.equal(subset, balanced_subset(labels, size, seed=7))
    assert not torch.equal(subset, balanced_subset(labels, size, seed=8))


def test_full_size_subset_is_a_permutation_and_bad_sizes_are_refused():
    labels = load_mnist("train").labels
    assert sorted(balanced_subset(labels, 60_000).tolist()) == list(range(60_000))
    with pytest.raises(ValueError, match="multiple of 10"):
        balanced_subset(labels, 605)


def test_the_cifar10_subset_ships_intact_and_decodes_balanced(root):
    from vision_core.data import CIFAR10_CLASSES, load_cifar10

    tar = root / "data" / "cifar10" / "cifar10-jpeg.tar"
    assert hashlib.md5(tar.read_bytes()).hexdigest() == "0234d95a76600b96402833fcec71eb3a"  # as its README says
    for split, per_class in (("train", 1_000), ("test", 200)):
        data = load_cifar10(split)
        assert data.images.shape == (10 * per_class, 3, 32, 32) and data.images.dtype == torch.uint8
        assert torch.bincount(data.labels).tolist() == [per_class] * 10
    test = load_cifar10("test")
    assert sorted(set(test.labels[:20].tolist())) == list(range(10))  # interleaved: a short validation sees every class
    assert len(CIFAR10_CLASSES) == 10 and 60 < float(test.images.float().mean()) < 180


def test_datasets_say_what_they_are_and_where_to_get_more():
    from vision_core.datasets import get_dataset, list_datasets

    assert list_datasets() == ["mnist", "cifar10", "my-classes"]
    cifar = get_dataset("cifar10")
    assert (cifar.channels, cifar.image_size, cifar.mean) == (3, 32, (0.5, 0.5, 0.5)) and cifar.fetch is not None
    assert [s.name for s in cifar.augment.steps] == ["RandomHorizontalFlip", "RandomCrop"]
    with pytest.raises(KeyError, match="unknown dataset 'imagenet'"):
        get_dataset("imagenet")
    from PIL import Image

    assert cifar.preprocess(Image.new("RGB", (640, 480), (255, 0, 0))).shape == (3, 32, 32)
