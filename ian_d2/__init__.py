"""ian_d2: end-to-end person search (IAN) as a Detectron2 extension.

Importing this package registers its datasets into Detectron2's catalogs.
"""
__version__ = "0.1.0"
