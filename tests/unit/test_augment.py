import numpy as np
import pytest
import torch

from resnet.augment import normalize, random_crop_flip

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def reference(images: np.ndarray, offsets: np.ndarray, flips: np.ndarray, padding: int) -> np.ndarray:
    """Per-image pad, crop and flip in numpy: slow, obvious, independent of the code under test."""
    p = padding
    out = []
    for img, (dy, dx), flip in zip(images, offsets, flips, strict=True):
        padded = np.pad(img, ((0, 0), (p, p), (p, p)))
        crop = padded[:, dy : dy + 32, dx : dx + 32]
        out.append(crop[:, :, ::-1] if flip else crop)
    return np.stack(out)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("padding", [4, 2, 0])
def test_matches_a_per_image_reference_with_the_same_draws(device, padding):
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=gen(1)).to(device)
    before = images.clone()
    out = random_crop_flip(images, gen(7, device), padding=padding)
    assert out.dtype == torch.uint8 and out.shape == (32, 3, 32, 32) and out.device == images.device
    assert torch.equal(images, before)  # input untouched

    g = gen(7, device)  # replay the documented draws: offsets, then flips
    offsets = torch.randint(0, 2 * padding + 1, (32, 2), generator=g, device=device)
    flips = torch.randint(0, 2, (32,), generator=g, device=device)
    expected = reference(images.cpu().numpy(), offsets.cpu().numpy(), flips.cpu().numpy(), padding)
    np.testing.assert_array_equal(out.cpu().numpy(), expected)


def test_crops_stay_inside_the_padded_image():
    # All-255 input: every output shows zero lines on at most one side per axis, at most 4 of
    # them, and nowhere else: the window is one of the 9 x 9 inside the padded image.
    out = random_crop_flip(torch.full((4000, 3, 32, 32), 255, dtype=torch.uint8), gen(0))
    assert set(out.unique().tolist()) == {0, 255}
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])  # one window for R, G, B
    offsets = []
    for lit in ((out[:, 0].amax(dim=2) == 255).numpy(), (out[:, 0].amax(dim=1) == 255).numpy()):
        before, after = lit.argmax(axis=1), lit[:, ::-1].argmax(axis=1)  # zero lines on each side
        assert (np.minimum(before, after) == 0).all() and (np.maximum(before, after) <= 4).all()
        assert (lit.sum(axis=1) == 32 - before - after).all()  # zeros only at the borders
        offsets.append(4 - before + after)  # the window's offset in the padded image, 0..8
    # Row offsets are not affected by flips: all 9 appear, roughly uniformly (444 expected each).
    assert (np.bincount(offsets[0], minlength=9) > 350).all() and offsets[0].max() == 8


def test_about_half_the_images_are_flipped():
    # Without padding an output is the image or its mirror; the image is asymmetric.
    image = torch.arange(32, dtype=torch.uint8).expand(3, 32, 32)
    out = random_crop_flip(image.expand(4000, 3, 32, 32), gen(3), padding=0)
    flipped = (out == image.flip(-1)).flatten(1).all(dim=1)
    same = (out == image).flatten(1).all(dim=1)
    assert bool((flipped ^ same).all())
    # Binomial(4000, 0.5): sd 31.6, so +-158 is 5 sd.
    assert abs(int(flipped.sum()) - 2000) < 158


def test_same_generator_state_same_batch_other_state_other_batch():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=gen(1))
    g = gen(5)
    state = g.get_state()
    first = random_crop_flip(images, g)
    second = random_crop_flip(images, g)  # the generator moved on
    g.set_state(state)
    assert torch.equal(random_crop_flip(images, g), first)
    assert torch.equal(random_crop_flip(images, gen(5)), first)
    assert not torch.equal(second, first)
    assert not torch.equal(random_crop_flip(images, gen(6)), first)


def test_generator_on_another_device_is_refused():
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8, device="meta")
    with pytest.raises(ValueError, match="device"):
        random_crop_flip(images, gen(0))


def test_normalize_is_per_channel():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1).expand(2, 3, 4, 4)
    mean, std = torch.tensor([0.0, 0.2, 0.5]), torch.tensor([1.0, 0.5, 0.25])
    out = normalize(images, mean, std)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 4, 4)
    expected = torch.tensor([0.0, 0.0, 2.0]).view(3, 1, 1).expand(2, 3, 4, 4)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(normalize(images[0], [0.0, 0.2, 0.5], [1.0, 0.5, 0.25]), expected[0])
