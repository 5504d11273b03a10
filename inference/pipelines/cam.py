"""Weakly supervised proposals: classifier + Grad-CAM, refined by AdvCAM, then post-processed.

Method (seed 003, after Lee et al., "Anti-adversarially manipulated attributions", CVPR 2021):

1. Grad-CAM of class ``c`` on the classifier's feature map ``A`` (``(1, K, h, w)``, ideally
   at full resolution as with the U-Net feature extractor of 003):
   ``cam = relu(sum_k mean_xy(d y_c / d A_k) * A_k)``, upsampled bilinearly to ``(H, W)``.
2. AdvCAM: ``iterations`` steps of anti-adversarial climbing on the (normalised) image,
   ``x <- clip(x + step * g / max|g|)`` with ``g = d L / d x`` and
   ``L = y_c - sum_{k != c} relu(y_k) - reg_weight * mean_M |cam(x) - cam(x_0)| / max cam(x_0)``,
   where ``M`` marks the already highly activated pixels (accumulated CAM above
   ``mask_threshold`` of its maximum), so that new regions are discovered rather than
   the same ones amplified. The step is normalised by the largest gradient component, as
   in the authors' code. The CAM used by the regulariser keeps the Grad-CAM channel
   weights of the current step fixed (first-order, no double backward).
3. The CAMs of all steps (including the unmodified image) are summed; the noise floor
   of clean surface (the map's ``floor_quantile`` quantile, 0 = none) is subtracted
   and the rest divided by its maximum (``normalise_cam``). Dividing by the maximum
   alone assumes clean surface scores zero: the CAM of a classifier trained a few
   minutes on weak clicks scores asphalt or concrete texture at 10-30 % of a crack's
   peak, and 003's threshold of 0.1 of the maximum then proposed nearly all of the
   image. The CAM trainer picks ``floor_quantile`` and ``threshold`` on held-out images
   and records them in the manifest's ``defaults``.
4. Post-processing of 003: threshold (``threshold``, default 0.1), morphological closing
   (``closing`` radius in pixels), removal of components smaller than ``min_area``; one
   proposal per remaining component.

The model is TorchScript (``model.pt``) returning ``(logits (1, C), features (1, K, h, w))``,
or a dict with ``"logits"`` and the feature map under the manifest's ``feature_layer``
(default ``"features"``). Classes whose probability (manifest ``output_activation``,
default sigmoid for ``"none"`` logits) reaches ``class_threshold`` get CAMs; a proposal's
score is that class probability.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from inference.pipelines.base import Pipeline, Progress, Runtimes, check_image, maps_to_proposals, normalize
from inference.proposal import Proposal
from inference.registry import ModelError, ModelInfo
from annotation.cancel import is_cancelled
from inference.tiling import Cancelled, tiled_apply


def normalise_cam(acc: np.ndarray, floor_quantile: float = 0.0) -> np.ndarray:
    """``acc`` (H, W) non-negative CAM -> [0, 1]: minus its ``floor_quantile`` quantile
    (the level of clean surface; 0 keeps the map as it is), clipped at zero, divided by
    the maximum. An all-zero result stays zero."""
    acc = np.asarray(acc, np.float32)
    if floor_quantile > 0 and acc.size:
        acc = np.maximum(acc - np.float32(np.quantile(acc, min(float(floor_quantile), 1.0))), 0)
    top = float(acc.max()) if acc.size else 0.0
    return (acc / top).astype(np.float32) if top > 0 else np.zeros_like(acc)


class CamPipeline(Pipeline):
    task = "cam"
    defaults = {
        "iterations": 2,  # AdvCAM steps; 003 found 2 enough for defects (the original work used 27)
        "threshold": 0.1,
        "closing": 2,
        "min_area": 20,
        "class_threshold": 0.5,
        "step": 0.08,
        "reg_weight": 7.0,
        "mask_threshold": 0.5,
        "floor_quantile": 0.0,  # 003's plain max normalisation; trained models record their own
    }

    def __init__(self, info: ModelInfo, runtimes: Runtimes):
        super().__init__(info, runtimes)
        self._module = runtimes.torch.load_module(info.file("model.pt"))
        self._feature_key = self.manifest.feature_layer or "features"
        side = self.manifest.input_size or (32, 32)
        import torch

        try:
            with torch.no_grad():
                logits, feats = self._forward(torch.zeros((1, 3, side[0], side[1]), device=runtimes.torch.device))
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{info.path}: the classifier does not run on a test image "
                             f"({str(exc).strip().splitlines()[0][:300]})") from None
        if tuple(logits.shape) != (1, len(self.manifest.classes)) or feats.dim() != 4:
            raise ModelError(
                f"{info.path}: outputs logits {tuple(logits.shape)} and features {tuple(feats.shape)}; "
                f"expected (1, {len(self.manifest.classes)}) and (1, K, h, w)"
            )

    def _forward(self, x: Any) -> tuple[Any, Any]:
        """``x`` (1, 3, H, W) tensor -> (logits (1, C), features (1, K, h, w))."""
        out = self._module(x)
        if isinstance(out, dict):
            if "logits" not in out or self._feature_key not in out:
                raise ModelError(f"{self.info.path}: the output dict needs 'logits' and {self._feature_key!r}")
            return out["logits"], out[self._feature_key]
        if isinstance(out, (tuple, list)) and len(out) >= 2:
            return out[0], out[1]
        raise ModelError(f"{self.info.path}: a cam model must return (logits, features)")

    def _probs(self, logits: Any) -> np.ndarray:
        import torch

        act = self.manifest.output_activation
        if act == "softmax":
            return torch.softmax(logits, 1)[0].detach().cpu().numpy()
        if act == "none":
            # ``none`` for a classifier means its outputs are logits of independent labels
            return torch.sigmoid(logits)[0].detach().cpu().numpy()
        return torch.sigmoid(logits)[0].detach().cpu().numpy()

    def cam_maps(
        self, rgb: np.ndarray, params: Optional[Mapping[str, Any]] = None, cancel: object = None
    ) -> tuple[np.ndarray, dict[str, float]]:
        """AdvCAM maps for one image or tile.

        Returns:
            ``(C, H, W)`` float32 maps in [0, 1] (zero for classes not predicted) and
            class name -> probability for the predicted classes.
        """
        import torch
        import torch.nn.functional as F

        p = self.params(params)
        dev = self.runtimes.torch.device
        h, w = rgb.shape[:2]
        x0 = torch.from_numpy(normalize(rgb, self.manifest)).to(dev)
        lo, hi = x0.min(), x0.max()
        classes = self.manifest.classes
        maps = np.zeros((len(classes), h, w), np.float32)
        with torch.no_grad():
            logits0, _ = self._forward(x0)
        probs = self._probs(logits0)
        chosen = {
            c: float(probs[i]) for i, c in enumerate(classes)
            if probs[i] >= p["class_threshold"] and c != self.manifest.background_class
        }
        iterations = max(0, int(p["iterations"]))
        for c in chosen:
            ci = classes.index(c)
            x = x0.clone()
            acc = torch.zeros((h, w), device=dev)
            init_cam: Any = None
            for t in range(iterations + 1):
                if is_cancelled(cancel):
                    raise Cancelled("cancelled")
                with torch.enable_grad():
                    x.requires_grad_(True)
                    logits, feats = self._forward(x)
                    grads = torch.autograd.grad(logits[0, ci], feats, retain_graph=True)[0]
                    weights = grads.mean(dim=(2, 3), keepdim=True).detach()
                    cam = F.relu((weights * feats).sum(1, keepdim=True))
                    cam = F.interpolate(cam, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
                    if t == 0:
                        init_cam = cam.detach()
                    acc += cam.detach()
                    if t == iterations:
                        break
                    region = (acc > p["mask_threshold"] * acc.max()).float()
                    others = torch.cat([logits[0, :ci], logits[0, ci + 1 :]])
                    scale = init_cam.max().clamp_min(1e-8)
                    reg = (region * (cam - init_cam).abs()).sum() / (region.sum() + 1.0) / scale
                    loss = logits[0, ci] - F.relu(others).sum() - p["reg_weight"] * reg
                    g = torch.autograd.grad(loss, x)[0]
                x = (x.detach() + p["step"] * g / g.abs().max().clamp_min(1e-12)).clamp(lo, hi)
            maps[ci] = normalise_cam(acc.cpu().numpy(), float(p["floor_quantile"]))
        return maps, chosen

    def propose(
        self, rgb: np.ndarray, params: Optional[Mapping[str, Any]] = None, cancel: object = None, progress: Progress = None
    ) -> list[Proposal]:
        p = self.params(params)
        rgb = check_image(rgb)
        tile = self.manifest.tile
        if tile is None or max(rgb.shape[:2]) <= tile:
            maps, scores = self.cam_maps(rgb, p, cancel)
            if progress:
                progress(1, 1)
        else:
            scores = {}

            def one_tile(t: np.ndarray) -> np.ndarray:
                m, s = self.cam_maps(t, p, cancel)
                for k, v in s.items():
                    scores[k] = max(v, scores.get(k, 0.0))
                return m

            maps = tiled_apply(rgb, one_tile, tile, self.manifest.overlap, cancel=cancel, progress=progress)
        return maps_to_proposals(
            maps, self.manifest.classes, self.info, threshold=float(p["threshold"]),
            background=self.manifest.background_class, close_radius=int(p["closing"]),
            min_area=int(p["min_area"]), scores=scores,
        )
