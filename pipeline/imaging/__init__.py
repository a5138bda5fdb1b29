"""Images in scanner millimetres: the volume type and its checks, NIfTI, de-identified DICOM,
resampling. :mod:`cardiotwin.pipeline.images` re-exports the public names."""
