"""Export of biLMs: SavedModel (and, in later modules, TFLite and ELMo HDF5)."""
