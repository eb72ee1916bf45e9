"""The same no-op task for each peer system, with results stored in the run's Redis (``BENCH_REDIS_URL``)."""
