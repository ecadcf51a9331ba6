"""File operations an operator may run on the agent's machine, inside the allowed roots only.

Commands (each handler's docstring is its help), answered by the
:class:`Files` capability the runner owns: ``files.roots``,
``files.list``, ``files.stat``, ``files.download``, ``files.upload``,
``files.move``, ``files.delete``. Every one of them is refused until the
agent's local configuration names at least one allowed root
(:attr:`LocalPolicy.allowed_roots`); the server cannot add roots.

Where a path may point
----------------------
A path is absolute (it must lie under one of the roots) or relative (to the
first root). :func:`~agent.files.paths.resolve` resolves the *parent directory* with
``os.path.realpath`` and requires it to be inside a resolved root, so
``..`` escapes, absolute paths elsewhere and symbolic links (at any depth)
that lead out of a root are refused. The final component is not resolved:

* operations on the entry itself (``stat``, ``delete``, ``move``, the
  replacing of ``upload``) act on a symbolic link, never on what it points to;
* operations on the content (``list``, ``download``) follow a final
  symbolic link only if its target is inside a root
  (:func:`~agent.files.paths.follow`).

A root that is itself a symbolic link is resolved on every command: its
target is the root, and paths are reported by their resolved form.

Time of check, time of use
--------------------------
A checked path can change before it is used (a local user swaps a directory
for a symbolic link to ``/etc``). Where the OS supports it (Linux, macOS,
the BSDs) every operation opens the resolved root and walks down to the
parent directory one component at a time with ``O_NOFOLLOW | O_DIRECTORY``,
then acts on the final name relative to that directory descriptor
(``openat``/``unlinkat``/``renameat``...), opening files with
``O_NOFOLLOW``: a component swapped for a link after the check makes the
operation fail with a refusal instead of following it. Without directory
descriptors (Windows) the operations use the checked paths; creating
symbolic links there needs a privilege ordinary users lack.

The record
----------
Every operation, refused ones included, is kept for the store as
``event.<agent>.fileop`` (``file_operations``) with the operator's id, and
written to the employee-readable access log
(:mod:`agent.files.record`).

The modules: :mod:`~agent.files.paths` (the checks),
:mod:`~agent.files.descriptors` (safe opening), :mod:`~agent.files.record`,
:mod:`~agent.files.listing`, :mod:`~agent.files.transfer`,
:mod:`~agent.files.changes` and :mod:`~agent.files.commands` (the capability).
"""
from agent.files.commands import Files

__all__ = ["Files"]
