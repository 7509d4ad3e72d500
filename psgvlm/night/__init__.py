"""Staging one night: the end-to-end stager, sleep statistics, upload checks, output writers."""
