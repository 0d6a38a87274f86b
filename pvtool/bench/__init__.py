"""`pvtool bench`: the same guests natively, paravirtualized and (when pvtool has it)
trap-and-emulated, in one process run, against the limits measured in the same run:
Unicorn's raw speed with no hooks, the cost of an empty hook, a null hypercall.

Benchmarks report figures; tests never assert them (DESIGN.md, "Measuring").
"""

DISK_SECTORS = 256  # the disk rows' workload by default: sectors read, then written
