"""The default-model recipe: three splits, one pre-processing, the best validation epoch published.

Trained briefly on real images at the sizes the shipped models use (glass at 384 x 384
with the boundary head, cracks at native resolution), then the published ONNX file is
re-scored through ``SemanticPipeline`` itself.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training_helpers import data_root, need_set

torch = pytest.importorskip("torch")


def test_three_splits_by_image_stratified_and_fixed_by_seed():
    from training.datasets import dataset_of, split_three
    from training.default_models import model_data

    for name in ("glass-gdd", "mirror-msd", "cracks-cfd", "cracks-deepcrack"):
        need_set(name)
    for model, sizes in (("mirror-glass-semantic", {"glass-gdd": 400, "mirror-msd": 10}),
                         ("cracks-semantic", {"cracks-cfd": 90, "cracks-deepcrack": 100})):
        images = model_data(model, data_root()).images
        train, val, test = split_three(images, 0.1, 0.2, seed=0)
        keys = [{im.split_key for im in part} for part in (train, val, test)]
        assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
        assert sum(map(len, keys)) == len(images)
        for set_name, n in sizes.items():  # each data set split in the same proportions
            assert sum(dataset_of(im) == set_name for im in test) == round(n * 0.2)
            assert sum(dataset_of(im) == set_name for im in val) == max(1, round(n * 0.1))
        again = split_three(list(reversed(images)), 0.1, 0.2, seed=0)
        assert [{im.split_key for im in part} for part in again] == keys
        other = split_three(images, 0.1, 0.2, seed=1)
        assert {im.split_key for im in other[2]} != keys[2]


@pytest.mark.torch
@pytest.mark.training
def test_trainer_preprocessing_is_the_pipelines_on_a_gdd_photo(tmp_path):
    """Training validates with the pipeline's own function; an exported model gives the
    same maps through the trainer's path and through ``SemanticPipeline`` on a 1280-px photo."""
    import inference.pipelines.base as base
    import training.semantic as sem
    from inference.pipelines.base import Runtimes
    from inference.pipelines.semantic import SemanticPipeline
    from inference.registry import Manifest, ModelInfo
    from inference.runtime import OnnxRuntime
    from training.datasets import read_rgb
    from training.export import export_semantic_onnx
    from training.models import SemanticNet

    assert sem.resize_image is base.resize_image
    assert sem.semantic_network_maps is base.semantic_network_maps
    need_set("glass-gdd")
    path = sorted((data_root() / "glass-gdd" / "image").glob("*.jpg"))[0]
    rgb = read_rgb(path)
    assert max(rgb.shape[:2]) == 1280
    torch.manual_seed(0)
    model = SemanticNet(4, pretrained=True, boundary=True).eval()
    folder = tmp_path / "m"
    folder.mkdir()
    export_semantic_onnx(model, sem.to_tensor_batch(base.resize_image(rgb, (384, 384))), folder / "model.onnx")
    man = {"name": "m", "version": "1", "task": "semantic", "classes": ["background", "mirror", "glass", "gim"],
           "background_class": "background", "input_size": [384, 384], "output_activation": "softmax"}
    (folder / "manifest.json").write_text(json.dumps(man), encoding="utf-8")
    pipe = SemanticPipeline(ModelInfo(Manifest.read(folder / "manifest.json"), folder), Runtimes(OnnxRuntime("cpu")))
    ours = sem.predict_probs(model, rgb, (384, 384), torch.device("cpu"))
    theirs = pipe.probability_maps(rgb)
    assert ours.shape == theirs.shape == (4,) + rgb.shape[:2]
    assert np.abs(ours - theirs).max() < 1e-3
    # and the network saw the area-averaged photo, not a bilinear sample of it
    seen = []
    run = pipe._run
    pipe._run = lambda x: (seen.append(x.copy()), run(x))[1]  # type: ignore[method-assign]
    pipe.probability_maps(rgb)
    expected = base.normalize_with(base.cv2.resize(rgb, (384, 384), interpolation=base.cv2.INTER_AREA),
                                   (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert np.allclose(seen[0], expected, atol=1e-5)


@pytest.mark.torch
@pytest.mark.training
@pytest.mark.slow
@pytest.mark.parametrize("model,limit,epochs", [("cracks-semantic", 8, 3), ("mirror-glass-semantic", 6, 2)])
def test_published_checkpoint_is_the_best_on_validation(tmp_path, monkeypatch, model, limit, epochs):
    from inference.pipelines.base import Runtimes
    from inference.pipelines.semantic import SemanticPipeline
    from inference.registry import Manifest, ModelInfo
    from inference.runtime import OnnxRuntime
    from training import default_models
    from training.semantic import score_images

    for s in default_models.MODELS[model]["sets"]:
        need_set(s)
    monkeypatch.setenv("SPECULA_DATA", str(data_root()))
    res = default_models.train_default(model, tmp_path / "out", minutes=20, seed=0, version="7", device="cpu",
                                       limit=limit, json_lines=True, epochs=epochs, threads=2)
    folder = Path(res["path"])
    man = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    tr, m = man["training"], man["metrics"]
    curve = tr["validation_curve"]
    assert [c["epoch"] for c in curve] == list(range(1, epochs + 1))
    best = max(curve, key=lambda c: c["val_score"])  # first of the maxima: a later tie does not replace it
    assert tr["best_epoch"] == best["epoch"]
    assert m["validation_protocol"]["image_mean_iou"] == pytest.approx(best["val_score"], abs=1e-9)
    # the splits: test images never trained on nor validated on, listed for the figures
    data = tr["data"]
    assert data["test_images"] == len(data["test_image_keys"]) > 0 and data["val_images"] == len(data["val_image_keys"]) > 0
    assert not set(data["test_image_keys"]) & set(data["val_image_keys"])
    assert data["images"] == data["train_images"] > 0  # the data summary counts what was trained on
    # what was published is what was chosen: the ONNX file through the pipeline scores
    # the kept epoch's validation figure, with the flip setting the manifest records
    pipe = SemanticPipeline(ModelInfo(Manifest.read(folder / "manifest.json"), folder), Runtimes(OnnxRuntime("cpu")))
    images = {im.key: im for im in default_models.model_data(model, data_root(), limit).images}
    val = [images[k] for k in data["val_image_keys"]]
    p = pipe.params()
    rescored, _ = score_images(pipe.probability_maps, val, default_models.MODELS[model]["classes"], p["threshold"])
    chosen = tr["settings_search"]["chosen"]
    assert chosen["val_score"] == max(c["val_score"] for c in tr["settings_search"]["candidates"])
    assert (man["defaults"]["flip_tta"], man["defaults"]["threshold"]) == (chosen["flip_tta"], chosen["threshold"])
    assert rescored["image_mean_iou"] == pytest.approx(chosen["val_score"], abs=1e-9)
    assert m["validation_published"]["image_mean_iou"] == pytest.approx(rescored["image_mean_iou"], abs=1e-9)
    # the PyTorch validation of the kept epoch and the exported file agree (plain settings)
    plain = next(c for c in tr["settings_search"]["candidates"] if not c["flip_tta"] and c["threshold"] == 0.5)
    assert plain["val_score"] == pytest.approx(best["val_score"], abs=0.01)
    assert m["test"]["mean_iou"] is not None
    assert "RESEARCH-ONLY" in tr["terms_summary"] and tr["train_seconds"] > 0 and tr["images_per_second"] > 0
    if model == "cracks-semantic":
        # native resolution: no fixed input, padded to the encoder's stride, tiles for big photos
        assert man["input_size"] is None and man["defaults"]["pad_multiple"] == 32 and man["tiling"]["tile"] == 1024
    else:
        import onnxruntime as ort

        assert man["input_size"] == [384, 384]
        names = [o.name for o in ort.InferenceSession(str(folder / "model.onnx")).get_outputs()]
        assert names == ["logits", "boundary", "features"]  # features: pooled into embeddings
