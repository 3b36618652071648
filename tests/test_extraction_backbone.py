"""The video ViT and checkpoint loading, against a test-side transcription of VideoMAEv2's forward_features
(EXTRACTION.md §2.1) and, for Hugging Face directories, transformers' own VideoMAE model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tal_kit.extraction.checkpoints import BACKBONES, CheckpointError, load_backbone, read_state_dict
from tal_kit.extraction.vit import VideoViT


def reference_sinusoid(n_position: int, d_hid: int) -> torch.Tensor:
    """VideoMAEv2 get_sinusoid_encoding_table: angle = pos / 10000^(2*(j//2)/d); sin on 0::2, cos on 1::2."""
    table = np.array([[pos / np.power(10000, 2 * (j // 2) / d_hid) for j in range(d_hid)]
                      for pos in range(n_position)])
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.tensor(table, dtype=torch.float32)[None]


def reference_forward_features(sd: dict, x: torch.Tensor, num_heads: int, eps: float = 1e-6) -> torch.Tensor:
    """VideoMAEv2 VisionTransformer.forward_features with use_mean_pooling=True, init_values=0, written out:
    patch embed -> + sinusoid -> blocks (x + attn(norm1 x); x + mlp(norm2 x)) -> fc_norm(x.mean(1))."""
    sd = {k: v.float() for k, v in sd.items()}
    w = sd["patch_embed.proj.weight"]
    x = F.conv3d(x, w, sd["patch_embed.proj.bias"], stride=tuple(w.shape[2:]))
    x = x.flatten(2).transpose(1, 2)
    b, n, c = x.shape
    x = x + reference_sinusoid(n, c)
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    head_dim = c // num_heads
    for i in range(depth):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (c,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps)
        qkv_bias = torch.cat((sd[p + "attn.q_bias"], torch.zeros_like(sd[p + "attn.v_bias"]), sd[p + "attn.v_bias"]))
        qkv = F.linear(h, sd[p + "attn.qkv.weight"], qkv_bias).reshape(b, n, 3, num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * head_dim ** -0.5
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        h = (attn @ v).transpose(1, 2).reshape(b, n, -1)
        x = x + F.linear(h, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = F.layer_norm(x, (c,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps)
        h = F.linear(F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
                     sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        x = x + h
    return F.layer_norm(x.mean(1), (c,), sd["fc_norm.weight"], sd["fc_norm.bias"], eps)


def random_original_state_dict(width: int, depth: int, mlp: int, patch: int, tubelet: int = 2, seed: int = 0,
                               classes: int = 710) -> dict[str, torch.Tensor]:
    """Random weights under VideoMAEv2's own key names and shapes (head included), stored in fp16 like the
    released checkpoint."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.02, mean=0.0):
        return (mean + scale * torch.randn(*shape, generator=g)).half()

    sd = {"patch_embed.proj.weight": r(width, 3, tubelet, patch, patch), "patch_embed.proj.bias": r(width)}
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update({p + "norm1.weight": r(width, scale=0.1, mean=1.0), p + "norm1.bias": r(width, scale=0.1),
                   p + "attn.qkv.weight": r(3 * width, width), p + "attn.q_bias": r(width, scale=0.1),
                   p + "attn.v_bias": r(width, scale=0.1), p + "attn.proj.weight": r(width, width),
                   p + "attn.proj.bias": r(width), p + "norm2.weight": r(width, scale=0.1, mean=1.0),
                   p + "norm2.bias": r(width, scale=0.1), p + "mlp.fc1.weight": r(mlp, width),
                   p + "mlp.fc1.bias": r(mlp), p + "mlp.fc2.weight": r(width, mlp), p + "mlp.fc2.bias": r(width)})
    sd.update({"fc_norm.weight": r(width, scale=0.1, mean=1.0), "fc_norm.bias": r(width, scale=0.1),
               "head.weight": r(classes, width), "head.bias": r(classes)})
    return sd


# the real ViT-g/14 and ViT-H/16 widths, MLPs, heads and patches; one block; a reduced 16 x (2 patches)^2 input
WIDTHS = {"vit-g/14": (1408, 6144, 14), "vit-h/16": (1280, 5120, 16)}


@pytest.mark.parametrize("name", list(WIDTHS))
@pytest.mark.parametrize("wrapper", ["module", "model"])
def test_original_layout_checkpoint_matches_the_videomae2_transcription(tmp_path, name, wrapper):
    width, mlp, patch = WIDTHS[name]
    sd = random_original_state_dict(width, 1, mlp, patch)
    path = tmp_path / "ckpt.pth"
    torch.save({wrapper: sd, "epoch": 3}, path)
    loaded = load_backbone(path, name, img_size=2 * patch)
    arch = loaded.model.arch
    assert (arch.embed_dim, arch.depth, arch.mlp_dim, arch.patch_size, arch.num_heads) == (width, 1, mlp, patch, 16)
    assert loaded.model.pos_embed.shape == (1, 8 * 4, width)
    assert torch.allclose(loaded.model.pos_embed, reference_sinusoid(32, width), atol=1e-6)
    x = torch.rand(3, 3, 16, 2 * patch, 2 * patch, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = loaded.model(x)
        ref = reference_forward_features(sd, x, num_heads=16)
        single = torch.cat([loaded.model(x[i:i + 1]) for i in range(3)])
    assert ours.shape == (3, width)
    assert (ours - ref).abs().max().item() < 1e-5
    assert (ours - single).abs().max().item() < 1e-5  # batched equals one clip at a time
    import hashlib
    assert loaded.checkpoint_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_depth_mlp_patch_come_from_shapes_and_heads_from_preset_or_override(tmp_path):
    sd = random_original_state_dict(96, 3, 200, 8, tubelet=4)
    path = tmp_path / "small.pth"
    torch.save(sd, path)  # no wrapper key at all
    arch = load_backbone(path, "vit-b/16", img_size=16, num_frames=8, hash_file=False).model.arch
    assert (arch.embed_dim, arch.depth, arch.mlp_dim, arch.patch_size, arch.tubelet_size) == (96, 3, 200, 8, 4)
    assert arch.num_heads == 12  # vit-b/16's
    loaded = load_backbone(path, "vit-b/16", img_size=16, num_frames=8, num_heads=4, hash_file=False)
    x = torch.rand(2, 3, 8, 16, 16)
    with torch.no_grad():
        assert (loaded.model(x) - reference_forward_features(sd, x, num_heads=4)).abs().max() < 1e-5


def test_mismatched_checkpoint_lists_missing_unexpected_and_misshaped_keys(tmp_path):
    sd = random_original_state_dict(64, 2, 128, 16)
    del sd["blocks.1.attn.q_bias"]  # missing (the other blocks keep theirs, so qkv_bias stays on)
    sd["blocks.0.attn.extra"] = torch.zeros(3)  # unexpected
    sd["fc_norm.weight"] = torch.ones(65)  # mis-shaped
    path = tmp_path / "bad.pth"
    torch.save({"module": sd}, path)
    with pytest.raises(CheckpointError) as err:
        load_backbone(path, "vit-b/16", num_heads=4, img_size=32, hash_file=False)
    msg = str(err.value)
    assert "missing keys: blocks.1.attn.q_bias" in msg
    assert "unexpected keys: blocks.0.attn.extra" in msg
    assert "fc_norm.weight (65,) vs model (64,)" in msg
    with pytest.raises(CheckpointError, match="does not exist"):
        load_backbone(tmp_path / "nope.pth")


def test_presets_are_the_published_architectures():
    # EXTRACTION.md §2.1 table; params of the 710-class models as HF counts them (measured there)
    g, h = BACKBONES["vit-g/14"], BACKBONES["vit-h/16"]
    assert (g.embed_dim, g.depth, g.num_heads, g.mlp_dim, g.patch_size, g.num_tokens) == (1408, 40, 16, 6144, 14, 2048)
    assert (h.embed_dim, h.depth, h.num_heads, h.mlp_dim, h.patch_size, h.num_tokens) == (1280, 32, 16, 5120, 16, 1568)
    with torch.device("meta"):
        for arch, params in ((g, 1_012_611_142), (h, 632_516_550)):
            model = VideoViT(arch)
            head = 710 * arch.embed_dim + 710
            assert sum(p.numel() for p in model.parameters()) + head == params


def _hf_model(tmp_path, eps=1e-6):
    transformers = pytest.importorskip("transformers")  # test-only oracle
    config = transformers.VideoMAEConfig(image_size=32, patch_size=16, num_channels=3, num_frames=16, tubelet_size=2,
                                         hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=160, hidden_act="gelu", qkv_bias=True,
                                         use_mean_pooling=True, layer_norm_eps=eps, num_labels=5)
    torch.manual_seed(0)
    model = transformers.VideoMAEForVideoClassification(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():  # non-trivial everything, LayerNorms included
            p.copy_(1.0 + 0.1 * torch.randn_like(p) if name.endswith("weight") and p.ndim == 1
                    else 0.05 * torch.randn_like(p))
    return model


def _hf_features(model, x: torch.Tensor) -> torch.Tensor:
    hidden = model.videomae(pixel_values=x.permute(0, 2, 1, 3, 4)).last_hidden_state  # HF takes (B, T, C, H, W)
    return model.fc_norm(hidden.mean(1))


def test_hugging_face_directory_matches_transformers_videomae(tmp_path):
    model = _hf_model(tmp_path)
    model.save_pretrained(tmp_path / "hf")
    assert (tmp_path / "hf" / "model.safetensors").exists()
    loaded = load_backbone(tmp_path / "hf", "vit-b/16")
    arch = loaded.model.arch
    assert (arch.embed_dim, arch.depth, arch.num_heads, arch.mlp_dim, arch.img_size) == (64, 2, 4, 160, 32)
    assert arch.fc_norm_eps == 1e-5 and arch.norm_eps == 1e-6  # HF's fixed fc_norm eps, config's block eps
    x = torch.rand(2, 3, 16, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (loaded.model(x) - _hf_features(model, x)).abs().max().item() < 1e-5
    # the same weights as a pytorch_model.bin with 4.x-style q_bias/v_bias names load to the same model
    legacy = {k.replace("attention.attention.query.bias", "attention.attention.q_bias")
               .replace("attention.attention.value.bias", "attention.attention.v_bias"): v
              for k, v in model.state_dict().items()}
    (tmp_path / "bin").mkdir()
    torch.save(legacy, tmp_path / "bin" / "pytorch_model.bin")
    (tmp_path / "bin" / "config.json").write_text((tmp_path / "hf" / "config.json").read_text())
    again = load_backbone(tmp_path / "bin", "vit-b/16", hash_file=False)
    with torch.no_grad():
        assert torch.equal(again.model(x), loaded.model(x))


def test_hf_directory_without_weights_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 64}))
    with pytest.raises(CheckpointError, match="neither model.safetensors nor pytorch_model.bin"):
        read_state_dict(tmp_path)


def test_pickled_objects_need_trust(tmp_path):
    import argparse

    sd = random_original_state_dict(64, 1, 128, 16)
    path = tmp_path / "with_args.pth"
    torch.save({"module": sd, "args": argparse.Namespace(lr=1e-3)}, path)  # as training scripts save them
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_backbone(path, "vit-b/16", num_heads=4, img_size=32, hash_file=False)
    loaded = load_backbone(path, "vit-b/16", num_heads=4, img_size=32, hash_file=False, trust=True)
    assert loaded.model.arch.embed_dim == 64
