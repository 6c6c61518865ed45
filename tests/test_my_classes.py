"""My classes: pictures in, a class set out (limits, zips, bad files), and a run that learns two visible classes."""

import dataclasses
import io
import zipfile

import pytest
import torch
from PIL import Image, ImageDraw

from vision_core.datasets import get_dataset
from vision_core.my_classes import (
    MAX_PER_CLASS,
    ClassSetError,
    build_class_set,
    class_set_from_bytes,
    load_class_set,
    prepare_picture,
    read_pictures,
    read_zip,
)
from vision_core.registry import build_model
from vision_core.training import TrainConfig, build_for_training, default_config, fine_tune


def picture(shape: str, seed: int, size=(160, 120)) -> Image.Image:
    """A light picture with a dark disc or a dark bar, placed and sized at random: two classes a network can tell apart."""
    generator = torch.Generator().manual_seed(seed)
    rand = lambda low, high: int(torch.randint(low, high, (1,), generator=generator))  # noqa: E731
    image = Image.new("RGB", size, (200 + rand(0, 40), 200 + rand(0, 40), 200 + rand(0, 40)))
    draw = ImageDraw.Draw(image)
    x, y, r = rand(40, 120), rand(30, 90), rand(18, 30)
    if shape == "disc":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(30, 60, 200))
    else:
        draw.rectangle((x - 8, 5, x + 8, size[1] - 5), fill=(200, 40, 30))
    return image


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def class_set(count: int = 12):
    return build_class_set(
        {shape: [prepare_picture(picture(shape, seed)) for seed in range(count)] for shape in ("disc", "bar")}
    )


def test_my_classes_train_on_a_frozen_efficientnet_and_recognise_new_pictures(tmp_path):
    path = tmp_path / "shapes.safetensors"
    path.write_bytes(class_set().to_bytes())
    base = default_config("effnet_lite0", "cpu", "my-classes")
    cfg = dataclasses.replace(base, class_set=str(path), epochs=30, batch_size=8, image_size=128)
    assert cfg.init == "imagenet" and cfg.mode == "features" and cfg.augment is False
    model = build_for_training(cfg)
    events = list(fine_tune(cfg, model=model))
    assert events[-1].kind == "done" and events[-1].classes == ("disc", "bar") and events[-1].accuracy == 1.0
    preprocess = get_dataset("my-classes").preprocess  # how a new photo is framed, as the pictures were
    new = torch.stack([preprocess(picture(shape, seed)) for shape in ("disc", "bar") for seed in range(100, 110)])
    with torch.inference_mode():
        answers = model.eval()(new).argmax(dim=1)
    assert answers.tolist() == [0] * 10 + [1] * 10


def test_a_class_set_travels_as_safetensors_and_comes_back_checked(tmp_path):
    original = class_set(5)
    again = class_set_from_bytes(original.to_bytes())
    assert again.classes == ("disc", "bar") and torch.equal(again.images, original.images)
    path = tmp_path / "set.safetensors"
    path.write_bytes(original.to_bytes())
    assert load_class_set(path).counts() == [5, 5]
    train, held = original.split(seed=0)
    assert len(held) == 2 and len(train) == 8 and sorted(held.labels.tolist()) == [0, 1]
    with pytest.raises(ClassSetError, match="not a class set file"):
        class_set_from_bytes(b"\x80\x04 a pickle, not safetensors")
    with pytest.raises(ClassSetError, match="is gone"):
        load_class_set(tmp_path / "missing.safetensors")


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ({"only": 5}, "1 class(es): train on 2 to 10 classes"),
        ({"a": 5, "b": 0}, "class 'b' has 0 picture(s): give each class at least 4"),
        ({"a": 5, "A": 5}, "two classes have the same name"),
        ({"a": 5, "  ": 5}, "a class name is 1 to 40 printable characters"),
        ({"a": 5, "b": MAX_PER_CLASS + 1}, "at most 100 per class"),
        ({str(i): 5 for i in range(11)}, "11 class(es): train on 2 to 10 classes"),
    ],
)
def test_bad_class_sets_are_refused_with_what_to_change(classes, message):
    blank = prepare_picture(Image.new("RGB", (10, 10)))
    with pytest.raises(ClassSetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_class_set({name: [blank] * count for name, count in classes.items()})


def test_uploads_keep_the_pictures_and_name_the_files_that_are_not(tmp_path):
    files = [("disc.png", png(picture("disc", 1))), ("notes.png", b"not a picture"), ("empty.jpg", b"")]
    pictures, problems = read_pictures(files)
    assert len(pictures) == 1 and pictures[0].shape == (3, 128, 128) and pictures[0].dtype == torch.uint8
    assert problems[0].startswith("notes.png: ") and problems[1].startswith("empty.jpg: the file is empty")
    with pytest.raises(ClassSetError, match="5,000 files at once: a class takes at most 100"):
        read_pictures([("x.png", b"")] * 5_000)


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_a_zip_of_class_folders_becomes_classes_and_hostile_zips_are_refused():
    files = {f"shapes/{shape}/{i}.png": png(picture(shape, i)) for shape in ("disc", "bar") for i in range(4)}
    classes, problems = read_zip(zipped({**files, "shapes/readme.txt": b"hi", "shapes/bar/broken.png": b"nope"}))
    assert {name: len(p) for name, p in classes.items()} == {"bar": 4, "disc": 4} and problems == ["shapes/bar/broken.png: this file is not an image format we can read (JPEG, PNG, WebP, GIF, BMP or TIFF)"]  # fmt: skip
    build_class_set(classes)
    with pytest.raises(ClassSetError, match="zip bomb"):
        read_zip(zipped({"a/big.png": b"\0" * 11_000_000}))
    with pytest.raises(ClassSetError, match="unsafe file name"):
        read_zip(zipped({"../../etc/a.png": png(picture("disc", 0))}))
    with pytest.raises(ClassSetError, match="has at most 536"):
        read_zip(zipped({f"a/{i}.png": b"" for i in range(5_000)}))
    with pytest.raises(ClassSetError, match="no pictures in folders"):
        read_zip(zipped({"loose.png": png(picture("disc", 0))}))
    with pytest.raises(ClassSetError, match="not a zip file"):
        read_zip(b"plain text")


def test_a_saved_my_classes_model_names_its_classes(tmp_path, monkeypatch):
    from runs_helpers import finished, weights_of

    from vision_core import registry
    from vision_core.registry import get_family
    from vision_core.runs import save_run

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    family = get_family("effnet_lite0")
    model = build_model("effnet_lite0", family.config(image_size=128, num_classes=2)).eval()
    cfg = TrainConfig(model="effnet_lite0", dataset="my-classes", class_set="x", init="imagenet", mode="features")
    spec = save_run(cfg, finished(model, ("disc", "bar")), weights_of(model, "effnet_lite0"), "shapes", directory=tmp_path)  # fmt: skip
    assert spec.task == "classes" and spec.labels == ("disc", "bar") and spec.input_size == (3, 128, 128)
