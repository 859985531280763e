"""seqmodels-predict's reading of inputs (text=, file=, stdin, image=) into model inputs."""

import io

import numpy as np
import pytest
import torch

from seqmodels.data.imdb import IMDBDataModule
from seqmodels.data.mnist import MNISTDataModule, to_sequence
from seqmodels.errors import UserError
from seqmodels.predict import ascii_image, read_request


@pytest.fixture
def reviews(tiny_imdb):
    dm = IMDBDataModule(root=str(tiny_imdb), batch_size=4, max_len=20, min_freq=1, val_size=4)
    dm.setup()
    return dm


@pytest.fixture
def digits(mnist_root):
    return MNISTDataModule(root=str(mnist_root), verify=False, val_size=8, mode="row")


def request(**given):
    return {"text": None, "file": None, "image": None, **given}


def test_text_file_and_stdin(reviews, tmp_path, monkeypatch):
    x, lengths, names = read_request(reviews, request(text="a great film"))
    assert x.shape == (1, 3) and lengths.tolist() == [3]
    assert x[0].tolist() == reviews.vocab.encode(["a", "great", "film"])
    assert names == ["text: a great film"]
    f = tmp_path / "reviews.txt"
    f.write_text("awful film\n\nwonderful!\n")
    x, lengths, names = read_request(reviews, request(file=str(f)))
    assert lengths.tolist() == [2, 2] and [n.split(":")[0] for n in names] == ["line 1", "line 3"]
    monkeypatch.setattr("sys.stdin", io.StringIO("boring\n"))
    x, _, _ = read_request(reviews, request(file="-"))
    assert x.tolist() == [reviews.vocab.encode(["boring"])]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"text": ""}, "input 1 has no words"),
        ({}, "give exactly one of text="),
        ({"text": "good", "file": "x.txt"}, "give exactly one of text="),
        ({"image": "digit.png"}, "this model reads text"),
        ({"file": "/no/such/reviews.txt"}, "does not exist"),
    ],
)
def test_text_input_mistakes_are_one_line(reviews, given, message):
    with pytest.raises(UserError, match=message):
        read_request(reviews, request(**given))


def test_blank_file(reviews, tmp_path):
    f = tmp_path / "blank.txt"
    f.write_text("\n  \n")
    with pytest.raises(UserError, match="has nothing to predict"):
        read_request(reviews, request(file=str(f)))


def test_png_is_encoded_as_in_training_and_drawn(digits, mnist_root, tmp_path):
    from PIL import Image

    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[6:22, 12:16] = 200
    Image.fromarray(digit).convert("RGB").save(tmp_path / "digit.png")
    x, lengths, names = read_request(digits, request(image=str(tmp_path / "digit.png")))
    assert lengths is None and x.shape == (1, 28, 28)
    torch.testing.assert_close(x[0], to_sequence(torch.from_numpy(digit), "row"))
    first, art = names[0].split("\n", 1)
    assert first == str(tmp_path / "digit.png") and art == ascii_image(torch.from_numpy(digit))


def test_dark_on_light_is_inverted_and_npy_is_read(digits, tmp_path):
    from PIL import Image

    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[6:22, 12:16] = 255  # a "1"
    Image.fromarray(255 - digit).save(tmp_path / "ink.png")  # black ink on white paper
    np.save(tmp_path / "one.npy", digit.astype(np.float32) / 255)  # floats in [0, 1]
    expected = to_sequence(torch.from_numpy(digit), "row")
    for name in ("ink.png", "one.npy"):
        x, _, names = read_request(digits, request(image=str(tmp_path / name)))
        torch.testing.assert_close(x[0], expected)
        assert ("inverted: light background" in names[0]) == (name == "ink.png")


def test_ascii_image_draws_the_strokes():
    digit = torch.zeros(28, 28, dtype=torch.uint8)
    digit[6:22, 12:16] = 255  # a "1": 16 rows of 4 full pixels
    digit[6, 16] = 128  # a mid-grey pixel
    lines = ascii_image(digit).split("\n")
    assert len(lines) == 16  # blank rows above and below are dropped
    assert lines[0] == " " * 24 + "@" * 8 + "++" and lines[1] == " " * 24 + "@" * 8


def test_image_input_mistakes_are_one_line(digits, tmp_path):
    from PIL import Image

    with pytest.raises(UserError, match="this model reads 28x28 images, not text: pass image="):
        read_request(digits, request(text="seven"))
    Image.fromarray(np.zeros((32, 30), dtype=np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(UserError, match=r"has shape \(1, 32, 30\); .* resize it to 28x28"):
        read_request(digits, request(image=str(tmp_path / "big.png")))
    (tmp_path / "notes.png").write_text("not a png")
    with pytest.raises(UserError, match="cannot read it as an image"):
        read_request(digits, request(image=str(tmp_path / "notes.png")))
    with pytest.raises(UserError, match="no such file"):
        read_request(digits, request(image=str(tmp_path / "missing.png")))
