"""Benchmarks of the relay and the operator, side by side with LiteLLM's proxy and nginx.

Run everything with ``python -m bench`` (or ``bench/run.sh``); ``--smoke`` runs every case at
tiny sizes. Modules:

* :mod:`bench.wire`, :mod:`bench.client`, :mod:`bench.loadgen`: the load generator (a minimal
  HTTP/1.1 client on asyncio protocols; open-loop at a fixed arrival rate, latency counted from
  the *intended* send time, so a slow server cannot hide its queueing: no coordinated omission);
* :mod:`bench.procs`, :mod:`bench.stack`, :mod:`bench.upstream`: the processes under test;
* :mod:`bench.cases`: one module per measured case;
* :mod:`bench.report`, :mod:`bench.plots`: the table, ``BENCHMARKS.md`` and the figures.
"""
