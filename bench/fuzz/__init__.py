"""Fuzz targets past the header decoder: hostile bodies for the broker's
dispatch, the persister's ingest and its history queries.

Each target is a small class with ``run(case)`` that raises
:class:`~bench.fuzz.findings.Finding` when an invariant breaks, so the same
code serves the suite's short hypothesis runs (``tests/test_fuzz_*.py``) and
the long atheris runs of ``make chaos`` (``python -m bench.fuzz.run``):

* :mod:`bench.fuzz.dispatch`: a real in-process broker (and persister) with
  real Curve peers of every role sending valid headers of every kind with
  hostile bodies, topics, operations and arguments;
* :mod:`bench.fuzz.ingest`: ``record_for`` + ``Store.write_batch`` on a temp
  store with hostile records of every kind and event route;
* :mod:`bench.fuzz.query`: ``Persister._answer`` with hostile requests.

:mod:`bench.fuzz.hostile` holds the vocabulary of hostile values and the two
ways to draw from it (hypothesis strategies, atheris' FuzzedDataProvider).
"""
