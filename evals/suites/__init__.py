"""The eval suites; each module has ``main(argv) -> int`` and a ``run_...`` function tests call."""
