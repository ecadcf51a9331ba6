"""The SQLite persister: the durable store behind the bus.

``schema`` (tables and migrations), ``crypto`` (field encryption and keys)
and ``store`` (writes, history queries, retention) are the storage library;
the bus service that drives it lives beside them.
"""
