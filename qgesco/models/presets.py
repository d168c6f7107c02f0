"""Named model configurations.

``gesco-cityscapes-256`` is the published GESCO Cityscapes network (flags of the published
sampling script). The small presets are what a CPU can train and run: ``camvid-demo`` is
the bundled demo model's architecture, ``tiny-ref`` the reference fixture's, ``cpu-test``
a toy used by the test-suite.
"""

from __future__ import annotations

from .config import UNetConfig, config_from_official_flags

GESCO_CITYSCAPES_FLAGS = dict(
    image_size=256,
    num_classes=35,
    num_channels=256,
    num_res_blocks=2,
    channel_mult="",
    attention_resolutions="32,16,8",
    num_heads=1,
    num_head_channels=64,
    num_heads_upsample=-1,
    use_scale_shift_norm=True,
    resblock_updown=True,
    learn_sigma=True,
    class_cond=True,
    no_instance=False,
    dropout=0.0,
    use_fp16=False,
    use_new_attention_order=False,
)

PRESETS: dict[str, UNetConfig] = {
    "gesco-cityscapes-256": config_from_official_flags(**GESCO_CITYSCAPES_FLAGS, image_hw=(256, 512)),
    "tiny-ref": config_from_official_flags(
        image_size=32,
        num_classes=35,
        num_channels=32,
        num_res_blocks=1,
        channel_mult="1,2",
        attention_resolutions="16",
        num_heads=1,
        num_head_channels=16,
        use_scale_shift_norm=True,
        resblock_updown=True,
        learn_sigma=True,
        class_cond=True,
        image_hw=(32, 64),
    ),
    "camvid-demo": UNetConfig(
        image_size=64,
        num_classes=12,
        num_channels=32,
        num_res_blocks=2,
        channel_mult=(1, 2, 4),
        attention_ds=(4,),
        num_head_channels=32,
        use_scale_shift_norm=True,
        resblock_updown=True,
        learn_sigma=True,
        no_instance=True,
        spade_hidden=16,
        norm_groups=8,
        image_hw=(48, 64),
    ),
    "cpu-test": UNetConfig(
        image_size=16,
        num_classes=12,
        num_channels=32,
        num_res_blocks=1,
        channel_mult=(1, 2),
        attention_ds=(2,),
        num_head_channels=32,
        use_scale_shift_norm=True,
        resblock_updown=True,
        learn_sigma=True,
        no_instance=True,
        spade_hidden=16,
        image_hw=(16, 16),
    ),
}


def get_preset(name: str) -> UNetConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; presets: {', '.join(PRESETS)}") from None
