"""Inference: a trained model over a split, down to per-video detections, and NMS replayed on cached candidates.

* :mod:`~tal_kit.inference.predict` — THE inference loop: batched forward passes (sharded over ranks), pre-NMS
  candidates per video, NMS and seconds (SPEC §D.11).
* :mod:`~tal_kit.inference.candidates` — pre-NMS candidates per video, their ``.npz`` cache and stand-ins made from
  ground truth; one video's detections as plain arrays.
* :mod:`~tal_kit.inference.nms` — NMS settings by the config's names, NMS replay on cached candidates, NMS sweeps.

Pure data: nothing here imports a plotting or widget library, nor the evaluation (scoring is passed in).
"""
