"""The UNet configs used by tests and benchmarks build the architectures they name (ComfyUI's own UNetModel)."""
from __future__ import annotations


from pack_import import sub, tiny_unet


def _attention_map(unet):
    from comfy.ldm.modules.attention import SpatialTransformer

    return ([any(isinstance(layer, SpatialTransformer) for layer in block) for block in unet.input_blocks],
            [any(isinstance(layer, SpatialTransformer) for layer in block) for block in unet.output_blocks])


def test_reference_config_is_sd15(mc):
    """Same structural fields as ComfyUI's SD15 detection (model_detection.unet_config_from_diffusers_unet) and
    SD1.5's parameter count, 859,520,964."""
    cfg = sub("configs").reference_unet_config()
    sd15 = {"model_channels": 320, "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
            "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 1, "use_linear_in_transformer": False,
            "context_dim": 768, "num_heads": 8, "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
            "in_channels": 4, "out_channels": 4, "adm_in_channels": None}
    assert {k: cfg[k] for k in sd15} == sd15
    unet = tiny_unet(cfg, device="meta")
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964
    inputs, outputs = _attention_map(unet)
    assert inputs == [False, True, True, False, True, True, False, True, True, False, False, False]
    assert outputs == [False] * 3 + [True] * 9


def test_tiny_config_structure(mc):
    unet = tiny_unet(sub("configs").tiny_unet_config(), device="meta")
    inputs, outputs = _attention_map(unet)
    assert inputs == [False, True, True, False, True, True]
    assert outputs == [True] * 6
    assert len(unet.middle_block) == 3
