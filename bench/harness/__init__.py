"""Dev harnesses: never installed with the product (``setup.cfg`` packages only
broker, agent, gui, sync and bridges).

* :mod:`bench.harness.xvfb`: a private Xvfb display;
* :mod:`bench.harness.pattern`: a scriptable test pattern (a Tk window) on a display;
* :mod:`bench.harness.demo`: a demo stack in one process (broker, persister, simulated agents);
* :mod:`bench.harness.screenshots`: the console's PNGs for the docs (``make screenshots``).

Tests, benchmarks and the docs tooling import them from a checkout.
"""
