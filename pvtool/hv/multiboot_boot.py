"""What a PV boot gives a kernel of the Multiboot loader's: its modules and the command
line as native mode gives them.

Xen's builder (xg_dom_x86.c) loads one module, the initrd, on the pages after the
kernel and names it in start_info's mod_start (virtual) and mod_len. pvtool loads
every --module there, each on the page after the previous one (QEMU's placement),
so with one module start_info says exactly what Xen's would, and with several
mod_start/mod_len span them all. The unused tail of the start_info page gets pvtool's
table (abi/pvtool.py MULTIBOOT_TABLE, docs/ABI.md) and after it a Multiboot module
list, the modules' strings and the command line native mode's loader gives ("path
text"), from which a patched kernel's PV entry completes its Multiboot information.
Every address there is physical, as Multiboot's. Without modules the domain's layout
is Xen's.
"""

from dataclasses import dataclass
from pathlib import Path

from pvtool.abi import pvtool as pvabi
from pvtool.errors import UsageError
from pvtool.image.multiboot import INFO_FIELDS, InfoLayout, Module, build_info
from pvtool.machine.loader import module_string, multiboot_cmdline, place_modules, read_module
from pvtool.machine.pc import Machine
from pvtool.x86.paging import PAGE_SIZE, page_up


@dataclass(frozen=True)
class LoadedModules:
    end: int  # first virtual address after the last module (the kernel's end if none)
    mod_start: int  # start_info's fields: virtual, 0 when there is no module
    mod_len: int
    modules: tuple[Module, ...]  # physical addresses and strings


def load_modules(machine: Machine, modules: tuple[Path, ...], kernel_end: int,
                 virt_base: int) -> LoadedModules:
    """Load MODULES from the page after KERNEL_END (virtual)."""
    contents = [read_module(path) for path in modules]
    strings = [module_string(path) for path in modules]
    first = page_up(kernel_end) - virt_base
    loaded = place_modules(machine, modules, contents, strings, first)
    for module, data in zip(loaded, contents, strict=True):
        machine.memory.write_phys(module.start, data)
    if not loaded:
        return LoadedModules(kernel_end, 0, 0, ())
    end = virt_base + loaded[-1].end
    return LoadedModules(end, virt_base + first, loaded[-1].end - first, tuple(loaded))


def multiboot_table(image_path: Path, cmdline: bytes, loaded: LoadedModules,
                    start_info: int) -> bytes:
    """pvtool's table and what it points to, for the start_info page at physical
    START_INFO from START_INFO_MULTIBOOT on."""
    table_addr = start_info + pvabi.START_INFO_MULTIBOOT
    extras_addr = table_addr + pvabi.MULTIBOOT_TABLE.size
    info = build_info(InfoLayout(0, 0, extras_addr), mem_lower_kib=0, mem_upper_kib=0,
                      cmdline=multiboot_cmdline(image_path, cmdline), modules=loaded.modules)
    if extras_addr + len(info.extras) > start_info + PAGE_SIZE:
        raise UsageError(f"the command line and the module strings ({len(info.extras)} "
                         "bytes with the module list) do not fit in the start_info page")
    fields = {name: int.from_bytes(info.structure[INFO_FIELDS[name]:INFO_FIELDS[name] + 4],
                                   "little")
              for name in pvabi.MULTIBOOT_TABLE.fields}
    return pvabi.MULTIBOOT_TABLE.pack(**fields) + info.extras
