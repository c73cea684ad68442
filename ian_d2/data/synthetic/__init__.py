"""Procedural synthetic person-search datasets in the exact on-disk formats of CUHK-SYSU and PRW.

Street-like scenes with pedestrians whose identity is carried by their appearance (clothing
colours and pattern, skin and hair, body proportions, accessories) and who vary across images
by pose, scale, position, lighting, blur, camera colour cast and occlusion. The real loaders read
the output unchanged, so tests and demos can run without the real datasets.

Command line: ``python -m ian_d2.data.synthetic --format {cuhk_sysu,prw} --out DIR``.
"""

from .cuhk_sysu_writer import generate_cuhk_sysu
from .presets import SIZES, GeneratorConfig, make_config
from .prw_writer import generate_prw

__all__ = ["generate_cuhk_sysu", "generate_prw", "GeneratorConfig", "make_config", "SIZES"]
