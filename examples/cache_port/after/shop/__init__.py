"""An items API: a cached read path, a rate-limited report endpoint, and a worker that builds the reports."""
