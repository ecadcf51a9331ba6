"""The agent's screen capability: on-demand captures and live view.

* :mod:`agent.screen.capture` grabs the screen (mss) and encodes JPEG;
* :mod:`agent.screen.tiles` finds the changed parts of the screen;
* :mod:`agent.screen.motion` finds scrolls and moved windows among them;
* :mod:`broker.core.screen_frames` owns the live-view FRAME body format (both ends);
* :mod:`agent.screen.live` runs a live-view session: leases, frame rate, updates;
* :mod:`agent.screen.handlers` is :class:`~agent.screen.handlers.Screen`, the
  capability the runner owns: the ``capture`` / ``thumbnail`` / ``live.start`` /
  ``live.stop`` commands, the live view and the look gates.

The private X server and the scriptable test pattern that tests and benchmarks
use live in :mod:`bench.harness`, which is not installed with the product.

Nothing here needs a display to be imported: without one, the capability
reports itself unavailable with a reason.
"""
