"""pvtool: paravirtualize small x86 guest kernels and run them under a Python hypervisor."""

__version__ = "0.1.0"
