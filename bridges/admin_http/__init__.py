"""The admin HTTP API: what the PHP web UI's per-client actions call.

A headless, loopback-only JSON API in front of the bus (``ems admin-http``,
started by ``ems up`` when ``$EMS_ADMIN_TOKEN`` is set). Every call needs
``Authorization: Bearer $EMS_ADMIN_TOKEN`` and a loopback ``Host``; every
call is logged and written to ``DATA/logs/admin-http-audit.log``; the person
behind it is named by an optional ``X-EMS-Operator`` header and travels in
the command's args (``via``, ``caller``) next to the required ``reason``.

Modules: :mod:`.config` (defaults), :mod:`.guard` (Host, token, caller
checks), :mod:`.api` (routes), :mod:`.server` (HTTP), :mod:`.bus_worker`
(the one thread that uses the BusClient), :mod:`.audit` (the audit file),
:mod:`.service` (all of it started and stopped together).
"""
from bridges.admin_http.config import AdminHttpConfig
from bridges.admin_http.service import AdminHttp

__all__ = ["AdminHttp", "AdminHttpConfig"]
