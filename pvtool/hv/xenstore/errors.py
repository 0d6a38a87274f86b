"""The error a XenStore operation answers: an XS_ERROR reply naming one of xs_wire.h's
xsd_errors (ENOENT, EACCES, ...). It is the client's answer, never the hypervisor's
failure."""

from pvtool.abi.xs_wire import XS_ERRORS


class XenStoreError(Exception):
    def __init__(self, name: str, detail: str = ""):
        if name not in XS_ERRORS:
            raise ValueError(f"{name} is not one of xs_wire.h's xsd_errors")
        super().__init__(f"{name}: {detail}" if detail else name)
        self.name = name
