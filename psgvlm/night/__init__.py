"""Staging one night: the end-to-end stager (``stage``), its output files (``outputs``), one epoch again
(``viewer``), sleep statistics (``sleepstats``), upload checks (``uploads``), the app's session folders
(``sessions``)."""
