"""The parts of ``python -m benchmarks.bench_variants`` (the command line stays in
``bench_variants.py``):

* :mod:`.build`: the variants (kind x EMBED_BOXES), an exported model behind the eager model's
  call, the data set and the int8 calibration images;
* :mod:`.accuracy`: every variant through the evaluator and ``rescore``, paired bootstrap deltas;
* :mod:`.speed`: seconds per image of every variant, and ONNX Runtime's profile;
* :mod:`.goal`: which variants reach the issue's goal.
"""
