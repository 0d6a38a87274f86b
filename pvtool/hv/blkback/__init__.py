"""blkback: the block backend of split drivers, inside the hypervisor, serving the
run's first disk (`--disk`) to a frontend over a blkif ring (device.py on ring.py),
found and connected through XenStore (xenbus.py)."""
