"""The `ridecodec` command, through click's runner."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import ridecodec
from ridecodec import container
from ridecodec.cli import main
from ridecodec.errors import FormatError, InputError, ModelNotFoundError, OutputExistsError, UnsupportedImageError

from conftest import natural_like


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def images(tmp_path, gray_image, rgb_image):
    gray, rgb = tmp_path / "gray.png", tmp_path / "rgb.png"
    Image.fromarray(gray_image).save(gray)
    Image.fromarray(rgb_image).save(rgb)
    return gray, rgb


def run(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_compress_and_decompress_several_files(runner, images, tmp_path):
    gray, rgb = images
    result = run(runner, "compress", gray, rgb, "--model", "loco", "--quiet")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "gray.rdc").exists() and (tmp_path / "rgb.rdc").exists()
    out = tmp_path / "out"
    out.mkdir()
    result = run(runner, "decompress", tmp_path / "gray.rdc", tmp_path / "rgb.rdc", "-o", out)
    assert result.exit_code == 0, result.output
    for name in ("gray", "rgb"):
        original, restored = Image.open(tmp_path / f"{name}.png"), Image.open(out / f"{name}.png")
        assert restored.mode == original.mode
        assert np.array_equal(np.asarray(restored), np.asarray(original))


def test_output_file_for_one_input(runner, images, tmp_path):
    gray, _ = images
    assert run(runner, "compress", gray, "-o", tmp_path / "x.rdc", "-q").exit_code == 0
    assert run(runner, "decompress", tmp_path / "x.rdc", "-o", tmp_path / "x.png", "-q").exit_code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "x.png")), np.asarray(Image.open(gray)))


def test_never_overwrites_without_force(runner, images, tmp_path):
    gray, _ = images
    target = tmp_path / "gray.rdc"
    target.write_bytes(b"precious")
    result = run(runner, "compress", gray, "-q")
    assert result.exit_code == OutputExistsError.exit_code
    assert f"{gray}: {target} exists; use --force to overwrite it" in result.output  # which input, which output
    assert target.read_bytes() == b"precious"
    assert run(runner, "compress", gray, "-q", "--force").exit_code == 0
    assert target.read_bytes().startswith(b"\x89RDC")
    # decompressing next to the original refuses to replace it
    before = gray.read_bytes()
    assert run(runner, "decompress", target, "-q").exit_code == OutputExistsError.exit_code
    assert gray.read_bytes() == before


def test_one_bad_input_does_not_stop_the_others(runner, images, tmp_path):
    gray, rgb = images
    missing = tmp_path / "missing.png"
    result = run(runner, "compress", gray, missing, rgb, "-q")
    assert result.exit_code == InputError.exit_code
    assert f"{missing}: no such file" in result.output
    assert "1 of 3 files failed" in result.output
    assert (tmp_path / "gray.rdc").exists() and (tmp_path / "rgb.rdc").exists()


def test_jobs_code_files_in_worker_processes(runner, images, tmp_path):
    """--jobs 2: the same files as one at a time, reports in input order, and a bad input is
    reported without stopping the others."""
    gray, rgb = images
    alone = tmp_path / "alone"
    alone.mkdir()
    assert run(runner, "compress", gray, rgb, "-m", "loco", "-o", alone, "-q").exit_code == 0
    missing = tmp_path / "missing.png"
    result = run(runner, "compress", gray, missing, rgb, "-m", "loco", "--jobs", "2")
    assert result.exit_code == InputError.exit_code
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{gray} -> ") and lines[2].startswith(f"{rgb} -> ")
    assert f"{missing}: no such file" in lines[1] and "1 of 3 files failed" in lines[3]
    for name in ("gray", "rgb"):
        assert (tmp_path / f"{name}.rdc").read_bytes() == (alone / f"{name}.rdc").read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    result = run(runner, "decompress", tmp_path / "gray.rdc", tmp_path / "rgb.rdc", "-o", out, "-j", "2", "-q")
    assert result.exit_code == 0, result.output
    for name in ("gray", "rgb"):
        assert np.array_equal(
            np.asarray(Image.open(out / f"{name}.png")), np.asarray(Image.open(tmp_path / f"{name}.png"))
        )


def test_errors_are_one_line_without_traceback(runner, tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    floating_point = tmp_path / "float.tif"  # refused in every version: float samples
    Image.fromarray(np.zeros((4, 4), np.float32)).save(floating_point)
    fake_rdc = tmp_path / "fake.rdc"
    fake_rdc.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    cases = [
        (["compress", not_image], InputError.exit_code),
        (["compress", floating_point], UnsupportedImageError.exit_code),
        (["compress", tmp_path], InputError.exit_code),
        (["compress", not_image, "--model", "nope"], InputError.exit_code),
        (["decompress", fake_rdc], FormatError.exit_code),
        (["decompress", tmp_path / "none.rdc"], InputError.exit_code),
        (["info", fake_rdc], FormatError.exit_code),
    ]
    for args, code in cases:
        result = run(runner, *args, *(["-q"] if args[0] != "info" else []))
        assert result.exit_code == code, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ridecodec: error: "), (args, result.output)
        assert "Traceback" not in result.output


def test_unknown_model(runner, images):
    gray, _ = images
    result = run(runner, "compress", gray, "--model", "nope", "-q")
    assert result.exit_code == ModelNotFoundError.exit_code
    assert "'nope' is not installed" in result.output


def test_multiple_inputs_need_an_output_folder(runner, images, tmp_path):
    gray, rgb = images
    result = run(runner, "compress", gray, rgb, "-o", tmp_path / "single.rdc", "-q")
    assert result.exit_code != 0 and "must be an existing folder" in result.output


def test_info_text_and_json(runner, images, tmp_path):
    gray, _ = images
    run(runner, "compress", gray, "-q")
    text = run(runner, "info", tmp_path / "gray.rdc")
    assert text.exit_code == 0
    default = ridecodec.registry.default_model()  # compress used it: no --model given
    assert default in text.output and "bits per pixel" in text.output and "37x23 L" in text.output
    result = run(runner, "info", "--json", tmp_path / "gray.rdc")
    (fields,) = json.loads(result.output)
    assert fields["model_name"] == default and fields["width"] == 37 and fields["height"] == 23
    assert fields["file_bytes"] == os.path.getsize(tmp_path / "gray.rdc")
    assert fields["bits_per_pixel"] == pytest.approx(8 * fields["file_bytes"] / (37 * 23))


def test_models_lists_loco(runner):
    result = run(runner, "models")
    assert result.exit_code == 0 and "loco" in result.output and "ridecodec-loco" in result.output
    listing = json.loads(run(runner, "models", "--json", "--digests").output)
    loco = next(entry for entry in listing if entry["name"] == "loco")
    assert loco["weights_digest"] == ridecodec.load_model("loco").weights_digest()
    assert set(loco["modes"]) == {"L", "RGB", "RGBA"}
    ride = next(entry for entry in listing if entry["name"] == "ride")
    earlier = list(ridecodec.load_model("ride").readable_versions)
    assert earlier and ride["reads_versions"] == earlier  # ride keeps version 3's weights to read its files
    assert f"also reads {', '.join(earlier)}" in result.output


def test_eval_without_classical_codecs(runner, tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    Image.fromarray(natural_like(16, 20)).save(folder / "a.png")
    result = run(runner, "eval", folder, "--model", "loco", "--no-classical", "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert len(report["images"]) == 1


def test_version(runner):
    assert run(runner, "--version").exit_code == 0


def test_standard_input_and_output(runner, images):
    gray, _ = images
    compressed = runner.invoke(main, ["compress", "-", "-q"], input=gray.read_bytes())
    assert compressed.exit_code == 0
    assert compressed.stdout_bytes.startswith(b"\x89RDC")
    restored = runner.invoke(main, ["decompress", "-", "-o", "-", "-q"], input=compressed.stdout_bytes)
    assert restored.exit_code == 0
    import io

    assert np.array_equal(np.asarray(Image.open(io.BytesIO(restored.stdout_bytes))), np.asarray(Image.open(gray)))
    info = runner.invoke(main, ["info", "-"], input=compressed.stdout_bytes)
    assert info.exit_code == 0 and "37x23" in info.output


def test_file_to_standard_output(runner, images, tmp_path):
    gray, _ = images
    result = runner.invoke(main, ["compress", str(gray), "-o", "-", "-q"])
    assert result.exit_code == 0 and result.stdout_bytes.startswith(b"\x89RDC")
    assert not (tmp_path / "gray.rdc").exists()


def test_streams_take_a_single_input(runner, images, tmp_path):
    gray, rgb = images
    for args in (["compress", str(gray), "-"], ["compress", str(gray), str(rgb), "-o", "-"]):
        result = runner.invoke(main, args + ["-q"], input=b"")
        assert result.exit_code != 0 and "single input" in result.output
    assert not (tmp_path / "gray.rdc").exists()


def test_garbage_on_standard_input(runner):
    result = runner.invoke(main, ["decompress", "-", "-q"], input=b"not a ridecodec file")
    assert result.exit_code == FormatError.exit_code
    assert result.output.strip() == "ridecodec: error: <stdin>: not a ridecodec file (wrong magic bytes)"


def test_truncated_and_empty_inputs(runner, images, tmp_path):
    gray, _ = images
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(gray.read_bytes()[:200])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for source in (truncated, empty):
        result = run(runner, "compress", source, "-q")
        assert result.exit_code == InputError.exit_code, result.output
        assert result.output.startswith(f"ridecodec: error: {source}: ")
    assert not (tmp_path / "truncated.rdc").exists() and not (tmp_path / "empty.rdc").exists()


def test_zero_size_array_is_refused():
    with pytest.raises(InputError, match="empty"):
        ridecodec.compress(np.zeros((0, 5), np.uint8), model="loco")


def test_interrupt_exits_130_and_leaves_nothing(runner, images, tmp_path, monkeypatch):
    gray, rgb = images

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ridecodec.engine, "encode_variants", interrupted)
    before = sorted(os.listdir(tmp_path))
    result = run(runner, "compress", gray, rgb, "-q")
    assert result.exit_code == 130
    assert "interrupted" in result.output
    assert sorted(os.listdir(tmp_path)) == before


def test_inputs_are_never_modified(runner, images, tmp_path):
    gray, rgb = images
    before = {path: path.read_bytes() for path in (gray, rgb)}
    run(runner, "compress", gray, rgb, "-q")
    run(runner, "decompress", tmp_path / "gray.rdc", tmp_path / "rgb.rdc", "-q", "-o", tmp_path)
    for path, content in before.items():
        assert path.read_bytes() == content


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_a_gpu_is_a_clear_error(runner, images):
    gray, _ = images
    result = run(runner, "compress", gray, "--device", "cuda", "-q")
    assert result.exit_code == 10
    assert "torch sees no CUDA GPU" in result.output


def test_threads_change_nothing_in_the_file_or_the_pixels(tmp_path):
    """Exact models may run on several threads: the same bytes, the same pixels."""
    image = natural_like(21, 26, 3, seed=9)
    Image.fromarray(image).save(tmp_path / "a.png")
    runner = CliRunner()
    for threads in ("1", "2"):
        result = runner.invoke(
            main,
            [
                "compress",
                str(tmp_path / "a.png"),
                "-o",
                str(tmp_path / f"a{threads}.rdc"),
                "--threads",
                threads,
                "--quiet",
            ],
        )
        assert result.exit_code == 0, result.output
    assert (tmp_path / "a1.rdc").read_bytes() == (tmp_path / "a2.rdc").read_bytes()
    result = runner.invoke(
        main, ["decompress", str(tmp_path / "a1.rdc"), "-o", str(tmp_path / "b.png"), "-t", "2", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), image)


# --- models too slow for large images -------------------------------------------------------------


@pytest.fixture
def slow_loco(monkeypatch):
    """loco, declaring itself slow: 0.01 s per pixel, at most 500 pixels unless raised."""
    loco = type(ridecodec.registry.load_model("loco"))
    monkeypatch.setattr(loco, "seconds_per_pixel", 0.01)
    monkeypatch.setattr(loco, "pixel_limit", 500)
    return "loco"


def test_a_slow_model_refuses_large_images_with_an_estimate_until_the_limit_is_raised(runner, tmp_path, slow_loco):
    image = tmp_path / "big.png"
    Image.fromarray(natural_like(30, 40)).save(image)  # 1200 pixels: about 12 seconds
    result = run(runner, "compress", image, "--model", slow_loco)
    assert result.exit_code == UnsupportedImageError.exit_code
    assert "slow for large images (about 12 seconds on one CPU thread)" in result.output
    assert "--model-pixel-limit 1200" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "big.rdc").exists()

    result = run(runner, "compress", image, "--model", slow_loco, "--model-pixel-limit", 1200)
    assert result.exit_code == 0, result.output
    assert "codes this 40x30 image in about 12 seconds on one CPU thread" in result.output
    # the decoder holds the same limit, and says how long it will take
    assert ridecodec.read_header((tmp_path / "big.rdc").read_bytes()).coder == container.CODER_RANGE_CATEGORICAL
    result = run(runner, "decompress", tmp_path / "big.rdc", "-o", tmp_path / "back.png")
    assert result.exit_code == UnsupportedImageError.exit_code and "--model-pixel-limit 1200" in result.output
    assert not (tmp_path / "back.png").exists()
    result = run(runner, "decompress", tmp_path / "big.rdc", "-o", tmp_path / "back.png", "--model-pixel-limit", 2000)
    assert result.exit_code == 0, result.output
    assert "about 12 seconds" in result.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "back.png")), natural_like(30, 40))


def test_a_slow_model_codes_small_images_without_a_word(runner, tmp_path, slow_loco):
    image = tmp_path / "small.png"
    Image.fromarray(natural_like(10, 20)).save(image)  # 200 pixels: 2 seconds, under the notice's 10
    result = run(runner, "compress", image, "--model", slow_loco)
    assert result.exit_code == 0 and "about" not in result.output, result.output
    assert ridecodec.decompress(tmp_path / "small.rdc").shape == (10, 20)


def test_the_python_api_takes_the_same_limit(slow_loco):
    image = natural_like(30, 40)
    with pytest.raises(UnsupportedImageError, match="more than its limit of 500"):
        ridecodec.compress(image, model=slow_loco)
    data = ridecodec.compress(image, model=slow_loco, model_pixel_limit=1200)
    with pytest.raises(UnsupportedImageError, match="model_pixel_limit= in Python"):
        ridecodec.decompress(data)
    assert np.array_equal(ridecodec.decompress(data, model_pixel_limit=1200), image)


def test_models_lists_a_slow_models_speed_and_limit(runner, slow_loco):
    result = run(runner, "models")
    assert "slow: about 10000 us per pixel on one CPU thread; images up to 500 pixels" in result.output
    (entry,) = [e for e in json.loads(run(runner, "models", "--json").output) if e["name"] == "loco"]
    assert (entry["seconds_per_pixel"], entry["pixel_limit"]) == (0.01, 500)


def test_a_speed_per_layout_gives_each_layout_its_own_estimate(runner, tmp_path, monkeypatch):
    loco = type(ridecodec.registry.load_model("loco"))
    monkeypatch.setattr(loco, "seconds_per_pixel", {"L": 0.01, "RGB": 0.03})
    Image.fromarray(natural_like(30, 40)).save(tmp_path / "gray.png")
    Image.fromarray(natural_like(30, 40, 3, seed=2)).save(tmp_path / "colour.png")
    gray = run(runner, "compress", tmp_path / "gray.png", "--model", "loco")
    colour = run(runner, "compress", tmp_path / "colour.png", "--model", "loco")
    assert "codes this 40x30 image in about 12 seconds" in gray.output, gray.output
    assert "codes this 40x30 image in about 36 seconds" in colour.output, colour.output
    result = run(runner, "models")
    assert "slow: about 10000 us (L), 30000 us (RGB) per pixel on one CPU thread" in result.output
    (entry,) = [e for e in json.loads(run(runner, "models", "--json").output) if e["name"] == "loco"]
    assert entry["seconds_per_pixel"] == {"L": 0.01, "RGB": 0.03}
