"""Staging one night: the end-to-end stager (``stage``), every predictor of a night and the review list
(``predictors``), ``psgvlm reference`` (``reference``), its epoch grid and input checks (``grid``), its
output files (``outputs``), one epoch again (``viewer``), sleep statistics (``sleepstats``), upload checks
(``uploads``), the app's session folders (``sessions``)."""
