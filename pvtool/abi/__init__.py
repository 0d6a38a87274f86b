"""The Xen PV ABI as data (shared/XEN-ABI.md): numbers in xen.py, layouts in layouts.py.

Both the patcher's stubs and the hypervisor's dispatch import these; no number of the
ABI is written anywhere else.
"""
