"""What runs both sites, split by role: the Celery plumbing here (app factory, task base,
locks), the library both sites share in `common`, running sites on one machine in `local`,
and the benchmark in `bench`. Imports no app of either site."""
