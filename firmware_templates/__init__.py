"""C kernels and firmware templates, shipped inside the svt_deploy package as data."""
