"""`cltool serve`: the champion behind an HTTP JSON API that follows the alias (hot swap), batches
concurrent requests, and records a sample of what it served for the live monitors."""
