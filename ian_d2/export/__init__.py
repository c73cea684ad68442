"""Export IAN models to TorchScript and ONNX, and run them without Detectron2.

* ``python -m ian_d2.export --format onnx --config-file CFG --output DIR MODEL.WEIGHTS W``
  writes the gallery and query models, a manifest and a copy of the runtime (see
  :mod:`ian_d2.export.exporter`, the orchestration of :mod:`.checks`, :mod:`.precision`,
  :mod:`.quantize`, :mod:`.trace`, :mod:`.writers`, :mod:`.manifest` and :mod:`.verify`; every
  module raises :class:`.errors.ExportError`);
* :mod:`ian_d2.export.runtime` (standalone: numpy, Pillow and torch or onnxruntime) runs them
  with the eager model's pre- and post-processing;
* :mod:`ian_d2.export.parity` compares exported and eager outputs.

This package's ``__init__`` imports nothing heavy, so that ``ian_d2.export.runtime`` imports
without Detectron2; the exporter is imported from ``ian_d2.export.exporter``. Nothing here
imports :mod:`ian_d2.search` (an export ships without the index package): the model fingerprint
and the media types it shares with the index live in :mod:`ian_d2.utils`.
"""

__all__ = [
    "checks",
    "errors",
    "exporter",
    "manifest",
    "parity",
    "precision",
    "quantize",
    "runtime",
    "trace",
    "verify",
    "writers",
]
