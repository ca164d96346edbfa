"""Deployment-shaped tests: the real components started as they are in production (marker ``deploy``)."""
