"""The Xen PV ABI as data (shared/XEN-ABI.md, XEN-ABI64.md): the numbers both widths
share in xen.py, the 32-bit and width-independent layouts in layouts.py, everything
only a 64-bit guest sees in xen64.py.

Both the patcher's stubs and the hypervisor's dispatch import these; no number of the
ABI is written anywhere else.
"""
