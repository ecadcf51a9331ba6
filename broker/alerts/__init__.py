"""The alerts service: rules over what the bus carries, an inbox per operator, notifications.

A bus service (its own process and key, like the persister) that watches
presence, sysinfo, security events and the audit trail; opens, updates and
resolves alerts once each; puts alerts and approval requests in each
operator's inbox; and sends them out by e-mail and webhook. What one
notification is, for everything that delivers it, is :class:`Notice`
(:mod:`broker.alerts.notices`).
"""
