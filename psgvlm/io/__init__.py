"""The input layer: EDF/BDF files, the Recording type, channel names and the dataset readers."""
