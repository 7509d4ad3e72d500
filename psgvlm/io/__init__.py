"""The input layer: EDF/BDF files, the Recording type, channel names, hypnogram formats and the dataset
readers (one module per format family, registry in :mod:`psgvlm.io.readers`)."""
