"""The parts of ``python -m benchmarks.bench_serve`` (the command line stays in ``bench_serve.py``):

* :mod:`.stand_in`: the stand-in index (built with ``ShardWriter``, reused, copied);
* :mod:`.server`: the real search service as a subprocess, and the monitor of its indexing job;
* :mod:`.load`: what the concurrent clients send, the clients, a phase's record, the model alone;
* :mod:`.report`: the run's header (settings, code, machine), the integrity check, the goals.
"""
