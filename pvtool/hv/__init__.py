"""The hypervisor: domain builder, hypercalls, memory isolation, traps and events."""
