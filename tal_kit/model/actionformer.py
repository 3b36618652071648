"""ActionFormer: backbone -> neck -> heads, with its training losses and its inference decoding (SPEC §D).

The model takes padded features and a mask, as `tal_kit.data.collate_videos` makes them::

    model = ActionFormer(cfg)
    output = model(batch["feats"], batch["mask"])                       # ModelOutput, per-level lists
    losses = model.losses(output, batch["segments"], batch["labels"])   # {"cls_loss", "reg_loss", "final_loss"}
    detections = model.predict(batch)                                   # per video, in seconds, after NMS
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..config import Config
from ..data.dataset import padded_length
from .assignment import assign_targets
from .backbone import ConvTransformerBackbone
from .decode import decode_candidates
from .heads import ClassificationHead, PyramidLayout, RegressionHead
from .losses import diou_loss_1d, sigmoid_focal_loss, smooth_labels, updated_loss_normalizer
from .neck import FPNNeck, IdentityNeck
from .points import pyramid_points
from .postprocess import postprocess


@dataclass
class ModelOutput:
    """Dense outputs of one forward pass. Per-level lists (level l has T_l = T / 2^l steps):

    cls_logits [B, T_l, K]; offsets [B, T_l, 2] (distances to start and end in units of the level stride, >= 0);
    masks [B, T_l] bool (real steps); points [sum T_l, 4] rows (t, range_low, range_high, stride), t in input-grid
    units. The ``all_*`` fields hold the same values with the levels concatenated ([B, sum T_l, ...]).
    """

    cls_logits: list[Tensor]
    offsets: list[Tensor]
    masks: list[Tensor]
    points: Tensor
    all_cls_logits: Tensor
    all_offsets: Tensor
    all_masks: Tensor

    @property
    def level_lengths(self) -> list[int]:
        return [x.shape[1] for x in self.cls_logits]

    def points_per_level(self) -> list[Tensor]:
        return list(self.points.split(self.level_lengths, dim=0))


class ActionFormer(nn.Module):
    """ActionFormer (convTransformer backbone, identity or FPN neck, shared conv heads) built from a tal_kit Config.

    Hyper-parameters come from cfg.dataset (input_dim, num_classes, max_seq_len), cfg.model, cfg.train_cfg and
    cfg.test_cfg, with upstream's names. ``compact_padding`` (default True) lets `predict` pad a video only as far
    as the result requires instead of to max_seq_len (see `inference_length`).
    """

    def __init__(self, cfg: Config):
        super().__init__()
        data, arch, train, test = cfg.dataset, cfg.model, cfg.train_cfg, cfg.test_cfg
        if arch.backbone_type != "convTransformer":
            raise ValueError(f"model.backbone_type {arch.backbone_type!r} is not supported (only 'convTransformer')")
        self.num_classes = int(data.num_classes)
        self.input_dim = int(data.input_dim)
        self.max_seq_len = int(data.max_seq_len)
        # derived values are computed once, in tal_kit.config (ModelConfig), and read here
        self.num_levels = arch.num_levels
        self.level_strides = arch.level_strides
        self.regression_range = [tuple(map(float, r)) for r in arch.regression_range]
        self.window_sizes = arch.window_sizes
        self.max_div_factor = arch.max_div_factor
        self.use_abs_pe = bool(arch.use_abs_pe)
        self.train_cfg, self.test_cfg = train, test
        self.compact_padding = True

        self.backbone = ConvTransformerBackbone(
            self.input_dim, arch.embd_dim, arch.n_head, arch.embd_kernel_size, self.max_seq_len,
            arch=arch.backbone_arch, window_sizes=self.window_sizes, scale_factor=arch.scale_factor,
            embd_with_ln=arch.embd_with_ln, dropout=train.dropout, droppath=train.droppath,
            use_abs_pe=arch.use_abs_pe, use_rel_pe=arch.use_rel_pe)
        if arch.fpn_type == "identity":
            if arch.fpn_dim != arch.embd_dim:
                raise ValueError(f"the identity neck needs fpn_dim == embd_dim, got {arch.fpn_dim} and {arch.embd_dim}")
            self.neck = IdentityNeck(self.num_levels, arch.fpn_dim, arch.fpn_with_ln)
        elif arch.fpn_type == "fpn":
            self.neck = FPNNeck(self.num_levels, arch.embd_dim, arch.fpn_dim, arch.scale_factor, arch.fpn_with_ln)
        else:
            raise ValueError(f"model.fpn_type must be 'identity' or 'fpn', got {arch.fpn_type!r}")
        self.head_gap = arch.head_kernel_size // 2
        self.cls_head = ClassificationHead(
            arch.fpn_dim, arch.head_dim, self.num_classes, prior_prob=train.cls_prior_prob,
            num_layers=arch.head_num_layers, kernel_size=arch.head_kernel_size, with_ln=arch.head_with_ln,
            empty_cls=train.head_empty_cls)
        self.reg_head = RegressionHead(
            arch.fpn_dim, arch.head_dim, self.num_levels, num_layers=arch.head_num_layers,
            kernel_size=arch.head_kernel_size, with_ln=arch.head_with_ln)
        # EMA of the number of positives per batch (SPEC §D.6); a buffer so that checkpoints resume it
        self.register_buffer("loss_normalizer", torch.tensor(float(train.init_loss_norm), dtype=torch.float64))

    @property
    def total_stride(self) -> int:
        """The stride of the coarsest level: every input length must be a multiple of it."""
        return self.level_strides[-1]

    # ------------------------------------------------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------------------------------------------------

    def forward(self, feats: Tensor, mask: Tensor) -> ModelOutput:
        """feats [B, input_dim, T] float, mask [B, T] bool (True on real steps); T a multiple of `total_stride`."""
        if feats.dim() != 3 or feats.shape[1] != self.input_dim:
            raise ValueError(f"feats must be [B, {self.input_dim}, T] (dataset.input_dim = {self.input_dim}), "
                             f"got {list(feats.shape)}")
        if mask.shape != (feats.shape[0], feats.shape[2]) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor [B, T] = {[feats.shape[0], feats.shape[2]]}, "
                             f"got {mask.dtype} {list(mask.shape)}")
        if feats.shape[2] % self.total_stride != 0:
            raise ValueError(f"the padded length {feats.shape[2]} must be a multiple of {self.total_stride} (the "
                             f"stride of the coarsest pyramid level); `inference_length` gives a valid length")
        feats, masks = self.backbone(feats, mask[:, None, :])
        feats, masks = self.neck(feats, masks)
        # The heads run on all levels in one pass when training (a few kernel launches instead of one per level;
        # backward keeps the same activations either way), and level by level in evaluation, where only the
        # current level's activations are alive at a time (lower peak memory on long videos).
        if self.training:
            groups = [(0, feats, masks)]
        else:
            groups = [(level, [x], [m]) for level, (x, m) in enumerate(zip(feats, masks))]
        all_cls, all_offsets, all_masks = [], [], []
        for first_level, group_feats, group_masks in groups:
            layout = PyramidLayout.join(group_feats, group_masks, self.head_gap, first_level)
            all_cls.append(layout.gather_steps(self.cls_head(layout)))
            all_offsets.append(layout.gather_steps(self.reg_head(layout)))
            all_masks.append(layout.gather_steps(layout.mask))
        all_cls, all_offsets, all_masks = (torch.cat(x, dim=1) if len(x) > 1 else x[0]
                                           for x in (all_cls, all_offsets, all_masks))
        lengths = [x.shape[-1] for x in feats]
        points = pyramid_points(lengths, self.level_strides, self.regression_range, device=all_cls.device)
        return ModelOutput(list(all_cls.split(lengths, dim=1)), list(all_offsets.split(lengths, dim=1)),
                           list(all_masks[..., 0].split(lengths, dim=1)), points, all_cls, all_offsets,
                           all_masks[..., 0])

    # ------------------------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------------------------

    def targets(self, output: ModelOutput, segments: Sequence[Tensor], labels: Sequence[Tensor]
                ) -> tuple[Tensor, Tensor]:
        """Per-point targets for the batch: (cls [B, P, K], reg [B, P, 2]); segments in input-grid units."""
        if len(segments) != len(labels) or len(segments) != output.all_cls_logits.shape[0]:
            raise ValueError(f"got {len(segments)} segment sets and {len(labels)} label sets for a batch of "
                             f"{output.all_cls_logits.shape[0]} videos")
        cls_targets, reg_targets = [], []
        for index, (segs, labs) in enumerate(zip(segments, labels)):
            segs, labs = torch.as_tensor(segs), torch.as_tensor(labs, dtype=torch.long)
            if segs.dim() != 2 or segs.shape[-1] != 2 or labs.shape != (segs.shape[0],):
                raise ValueError(f"batch item {index}: segments must be [N, 2] with labels [N], got "
                                 f"{list(segs.shape)} and {list(labs.shape)}")
            if labs.numel() and (int(labs.min()) < 0 or int(labs.max()) >= self.num_classes):
                raise ValueError(f"batch item {index}: labels {sorted(set(labs.tolist()))} fall outside "
                                 f"0..{self.num_classes - 1} (dataset.num_classes = {self.num_classes})")
            cls_t, reg_t = assign_targets(output.points, segs.to(output.points.device),
                                          labs.to(output.points.device), self.num_classes,
                                          center_sample=self.train_cfg.center_sample,
                                          center_sample_radius=self.train_cfg.center_sample_radius)
            cls_targets.append(cls_t)
            reg_targets.append(reg_t)
        return torch.stack(cls_targets), torch.stack(reg_targets)

    def losses(self, output: ModelOutput, segments: Sequence[Tensor], labels: Sequence[Tensor]) -> dict[str, Tensor]:
        """Focal classification loss over real points + DIoU regression loss over positive points, both divided by
        the loss normalizer (updated first when the model is in training mode). Returns cls_loss, reg_loss and
        final_loss = cls_loss + loss_weight * reg_loss."""
        cls_targets, reg_targets = self.targets(output, segments, labels)
        valid = output.all_masks
        positive = valid & (cls_targets.sum(-1) > 0)
        if self.training:
            self.loss_normalizer.copy_(updated_loss_normalizer(self.loss_normalizer, positive.sum()))
        normalizer = self.loss_normalizer.float()

        smoothing = self.train_cfg.label_smoothing
        cls_targets = smooth_labels(cls_targets, smoothing, self.num_classes)
        cls_loss = (sigmoid_focal_loss(output.all_cls_logits, cls_targets) * valid[..., None]).sum() / normalizer

        # non-positive points have no meaningful target; give them a harmless one before masking them out
        reg_targets = torch.where(positive[..., None], reg_targets, torch.ones_like(reg_targets))
        reg_loss = (diou_loss_1d(output.all_offsets, reg_targets) * positive).sum() / normalizer

        if self.train_cfg.loss_weight > 0:
            loss_weight = self.train_cfg.loss_weight
        else:  # balance the two terms adaptively (upstream's loss_weight <= 0)
            loss_weight = cls_loss.detach() / max(reg_loss.item(), 0.01)
        return {"cls_loss": cls_loss, "reg_loss": reg_loss, "final_loss": cls_loss + reg_loss * loss_weight}

    # ------------------------------------------------------------------------------------------------------------
    # inference
    # ------------------------------------------------------------------------------------------------------------

    def candidates(self, output: ModelOutput, index: int) -> dict[str, Tensor]:
        """Pre-NMS candidates of video ``index`` of the batch (segments in input-grid units), SPEC §D.11 step 1."""
        test = self.test_cfg
        return decode_candidates([x[index] for x in output.cls_logits], [x[index] for x in output.offsets],
                                 [x[index] for x in output.masks], output.points_per_level(),
                                 pre_nms_thresh=test.pre_nms_thresh, pre_nms_topk=test.pre_nms_topk,
                                 duration_thresh=test.duration_thresh)

    def reference_length(self, num_steps: int) -> int:
        """The length upstream pads an evaluation video to: max_seq_len, or for a longer video the next multiple
        of max_div_factor (the local attention's chunking needs it)."""
        return padded_length(num_steps, self.max_seq_len, self.max_div_factor, is_training=False)

    def inference_length(self, num_steps: int) -> int:
        """The shortest padded length that gives exactly upstream's results for a video of ``num_steps`` steps.

        What a real step sees past the end of a video depends only on whether the level it is on has at least one
        padded step after it (padded steps carry the LayerNorm bias; the end of the array is zero padding), not on
        how many. So padding to the next multiple of the coarsest stride, plus one more stride's worth, reproduces
        upstream's padding whenever upstream pads at all. Upstream's own length is kept when it pads nothing, when
        it is shorter anyway, or when the absolute position embedding is stretched to it.
        """
        reference = self.reference_length(num_steps)
        if not self.compact_padding or reference == num_steps or (self.use_abs_pe and reference > self.max_seq_len):
            return reference
        return min(reference, (math.ceil(num_steps / self.total_stride) + 1) * self.total_stride)

    def exact_at_length(self, num_steps: int, length: int) -> bool:
        """Whether a video of ``num_steps`` steps padded to ``length`` (e.g. batched with a longer one) gets the
        same outputs at its real steps as padded to its own `inference_length`.

        By the rule `inference_length` rests on, that holds when every pyramid level has padding after the video
        at both lengths or at neither, and, with the absolute position embedding, when the table is not stretched
        (in evaluation it is stretched to any length of at least max_seq_len) unless both lengths are equal.
        """
        own = self.inference_length(num_steps)
        if length == own:
            return True
        if length < own or length % self.total_stride or (self.use_abs_pe and length >= self.max_seq_len):
            return False
        for stride in self.level_strides:
            real = -(-num_steps // stride)  # steps of this level holding real data
            if (own // stride > real) != (length // stride > real):
                return False
        return True

    @torch.no_grad()
    def predict_candidates(self, feats: Tensor, mask: Tensor) -> list[dict[str, Tensor]]:
        """Pre-NMS candidates, on the CPU, of every video of a padded batch (the batch's device): the forward pass
        in eval mode and each video's decoding (SPEC §D.11 step 1). The one per-batch step of inference
        (`tal_kit.inference.predict` pads the batch to an exact length; see `inference_length`)."""
        was_training = self.training
        self.eval()
        try:
            output = self(feats, mask)
            return [{key: value.detach().cpu() for key, value in self.candidates(output, row).items()}
                    for row in range(feats.shape[0])]
        finally:
            self.train(was_training)

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any]) -> list[dict]:
        """Detections for one collated batch: `predict_candidates` then `postprocess` (NMS, seconds; SPEC §D.11),
        the two steps `tal_kit.inference.predict.predict` runs over a whole split.

        Returns per video {"video_id", "segments" [N, 2] seconds, "scores" [N], "labels" [N]} on the CPU.
        The batch is re-padded to `inference_length` of its longest video; use batch size 1 for upstream's numbers
        (a shorter video batched with a longer one gets more padding than upstream would give it).
        """
        feats, mask = batch["feats"], batch["mask"]
        feats, mask = _fit_length(feats, mask, self.inference_length(int(mask.sum(dim=1).max())))
        device = next(self.parameters()).device
        return postprocess(self.predict_candidates(feats.to(device), mask.to(device)), batch, self.test_cfg)


def _fit_length(feats: Tensor, mask: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Crop or zero-pad [B, C, T] features and their [B, T] mask to ``length`` steps."""
    current = feats.shape[-1]
    if length <= current:
        return feats[..., :length], mask[:, :length]
    return (torch.nn.functional.pad(feats, (0, length - current)),
            torch.nn.functional.pad(mask, (0, length - current), value=False))
