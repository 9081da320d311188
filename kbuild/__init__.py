"""kdump-ready kernel pipeline: configure, build, package and crash-test Linux kernels."""
