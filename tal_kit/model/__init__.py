"""ActionFormer for temporal action localization, numerically equal to the published model (SPEC §D).

    from tal_kit.model import ActionFormer
    model = ActionFormer(cfg)                      # cfg = tal_kit.config.load_config("thumos14")
    output = model(feats, mask)                    # dense per-level outputs (ModelOutput)
    losses = model.losses(output, segments, labels)
    detections = model.predict(batch)              # per video, seconds, after NMS
"""
from .actionformer import ActionFormer, ModelOutput
from .checkpoint import CheckpointMismatchError, convert_actionformer_state_dict, load_actionformer_checkpoint
from .postprocess import postprocess

__all__ = ["ActionFormer", "ModelOutput", "load_actionformer_checkpoint", "convert_actionformer_state_dict",
           "CheckpointMismatchError", "postprocess"]
