import numpy as np
import pytest
from PIL import Image
from upstream_fixtures import photo_like

from analysis_lib.core.images import MIN_IMAGE_SIDE, ImageError, image_from_bytes, load_image, verify_images


def test_sixteen_bit_png_is_scaled_by_its_bit_depth(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "depth16.png")
    assert Image.open(tmp_path / "depth16.png").mode == "I;16"
    pixels = np.asarray(load_image(tmp_path / "depth16.png"))
    assert pixels.shape == (64, 64, 3) and abs(pixels.mean() - 127.5) < 1
    assert pixels[0, 0, 0] == 0 and pixels[-1, -1, 0] == 255


@pytest.mark.parametrize("mode", ["L", "P", "1", "RGBA", "LA", "CMYK", "I;16"])
def test_every_ordinary_mode_becomes_rgb(tmp_path, mode):
    path = tmp_path / f"image.{'tiff' if mode == 'CMYK' else 'png'}"
    Image.fromarray(photo_like(40, 30)).convert(mode).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (40, 30)


@pytest.mark.parametrize("size", [(1, 1), (600, 1), (600, 3), (3, 512), (MIN_IMAGE_SIDE - 1, 600)])
def test_images_below_the_minimum_size_are_refused_naming_the_file(tmp_path, size):
    path = tmp_path / f"small_{size[0]}x{size[1]}.png"
    Image.new("RGB", size, (10, 200, 30)).save(path)
    with pytest.raises(ImageError, match=rf"image .*small_{size[0]}x{size[1]}.png is {size[0]}x{size[1]} pixels"):
        load_image(path)


def test_float_pixels_are_refused_with_what_to_do(tmp_path):
    Image.new("F", (32, 32), 0.5).save(tmp_path / "float.tiff")
    with pytest.raises(ImageError, match="32-bit float pixels .* save it as an 8- or 16-bit PNG"):
        load_image(tmp_path / "float.tiff")


def test_empty_truncated_and_missing_files_name_the_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    Image.fromarray(photo_like(64, 48)).save(tmp_path / "whole.jpg")
    content = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(content[: len(content) // 2])
    with pytest.raises(ImageError, match="empty.jpg cannot be read .*re-download"):
        load_image(tmp_path / "empty.jpg")
    with pytest.raises(ImageError, match="truncated.jpg cannot be read .*truncated"):
        load_image(tmp_path / "truncated.jpg")
    with pytest.raises(ImageError, match="image not found: .*gone.jpg"):
        load_image(tmp_path / "gone.jpg")
    with pytest.raises(ImageError, match="upload.png cannot be read"):
        image_from_bytes(content[:100], "upload.png")
    assert image_from_bytes(content, "upload.jpg").size == (64, 48)


def test_verify_images_lists_every_bad_file(tmp_path):
    Image.fromarray(photo_like(32, 32)).save(tmp_path / "good.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    paths = [tmp_path / "good.jpg", tmp_path / "empty.jpg", tmp_path / "good.jpg", tmp_path / "dot.png"]
    with pytest.raises(
        ImageError, match=r"2 of 3 images cannot be used:\n  - image .*empty.jpg.*\n  - image .*dot.png"
    ):
        verify_images(paths)
    assert verify_images([tmp_path / "good.jpg"]) == 1


def _stored_sideways(path, orientation: int) -> None:
    """A 30x40 image stored with red on top and blue below, tagged with EXIF ``orientation``."""
    pixels = np.zeros((40, 30, 3), np.uint8)
    pixels[:20], pixels[20:] = (255, 0, 0), (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation  # EXIF Orientation
    Image.fromarray(pixels).save(path, exif=exif)


@pytest.mark.parametrize("suffix", ["jpg", "png"])
@pytest.mark.parametrize(
    "orientation, size, red_at",
    [(1, (30, 40), (0, 0)), (3, (30, 40), (-1, 0)), (6, (40, 30), (0, -1)), (8, (40, 30), (0, 0))],
)
def test_exif_orientation_is_applied_as_viewers_show_it(tmp_path, suffix, orientation, size, red_at):
    path = tmp_path / f"sideways.{suffix}"
    _stored_sideways(path, orientation)
    assert Image.open(path).getexif()[0x0112] == orientation
    for image in (load_image(path), image_from_bytes(path.read_bytes(), path.name)):
        pixels = np.asarray(image).astype(int)
        assert image.size == size
        assert pixels[red_at][0] > 200 and pixels[red_at][2] < 50  # the red half where a viewer shows it
        assert pixels[-1 - red_at[0], -1 - red_at[1]][2] > 200  # and the blue half opposite it
