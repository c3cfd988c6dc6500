"""Plumbing shared by both sites: Celery app factory and task defaults, locks, settings
helpers, the process supervisor behind `up`, and the `cloudathome` command. Imports no app
of either site."""
