"""Procedural synthetic person-search datasets in the exact on-disk formats of CUHK-SYSU and PRW.

Street-like scenes with pedestrians whose identity is carried by their appearance (clothing
colours and pattern, skin and hair, body proportions, accessories) and who vary across images
by pose, scale, position, lighting, blur, camera colour cast and occlusion. The real loaders read
the output unchanged, so tests and demos can run without the real datasets.

:func:`generate_video` renders two camera videos (MJPG in AVI) of people walking through street
scenes, with identities shared between the cameras and per-frame person boxes, to test and demo
searching one's own footage; with ``site="target"``, the videos of a second site (four cameras
of another look, another population: :mod:`.video_site`) to adapt to and measure on.
:func:`generate_target_site` writes that site as a COCO person-search dataset (train and test
footage, sampled frames, a cross-camera protocol).

Command line: ``python -m ian_d2.data.synthetic --format {cuhk_sysu,prw,video,target-site}
--out DIR``.
"""

from .cuhk_sysu_writer import generate_cuhk_sysu
from .presets import SIZES, GeneratorConfig, make_config
from .prw_writer import generate_prw
from .site_dataset import generate_target_site
from .video import VideoConfig, generate_video, make_video_config

__all__ = [
    "generate_cuhk_sysu",
    "generate_prw",
    "generate_video",
    "generate_target_site",
    "GeneratorConfig",
    "make_config",
    "VideoConfig",
    "make_video_config",
    "SIZES",
]
