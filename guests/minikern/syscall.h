// System call numbers: the one list usys.S's stubs and syscall.c's table share.
#ifndef MINIKERN_SYSCALL_H
#define MINIKERN_SYSCALL_H

#define SYS_exit    1
#define SYS_write   2
#define SYS_getpid  3
#define SYS_yield   4
#define SYS_sleep   5
#define SYS_uptime  6
#define SYS_map     7
#define SYS_unmap   8

#endif
