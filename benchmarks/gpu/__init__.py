"""The parts of ``python -m benchmarks.gpu_check`` (the command line stays in ``gpu_check.py``):

* :mod:`.plan`: the steps (:class:`~.plan.Step`) and their arguments, GPU or ``--smoke``;
* :mod:`.parity`: the ``parity`` step, one forward pass on two devices compared;
* :mod:`.runner`: the ``env`` step, a step in this process or in its own under a time limit,
  and the whole check within its time budget;
* :mod:`.report`: the steps' results, statuses and failed logs combined into one JSON.
"""
