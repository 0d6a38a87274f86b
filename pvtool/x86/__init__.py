"""x86 facts shared by every layer: the catalogue of privileged and sensitive
instructions, the capstone/keystone wrappers, page-table formats and segment
descriptors. Nothing here knows about Unicorn, Xen's hypercalls or ELF files."""
