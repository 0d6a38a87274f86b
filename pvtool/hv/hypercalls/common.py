"""What hypercall handlers share."""

from collections.abc import Callable

from pvtool.hv.domain import PvDomain, VCpu

NO_RESULT = object()  # returned by a handler that sets EAX itself (HYPERVISOR_iret)
Handler = Callable[[PvDomain, VCpu, tuple[int, ...]], object]
MAX_BATCH = 1024  # most entries one batched hypercall may name (multicall, mmu_update...)
MAX_CONSOLE_WRITE = 64 << 10
