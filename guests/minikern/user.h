// What minikern's user programs see: the system calls (usys.S) and a small
// library (ulib.c). User programs are the files named u*.c; they run in ring 3
// and must not have writable globals (kernel.ld).
#ifndef MINIKERN_USER_H
#define MINIKERN_USER_H

// System calls.
void exit(int status) __attribute__((noreturn));
int write(int fd, const void *buf, int n);
int getpid(void);
int yield(void);
int sleep(int ticks);
int uptime(void);
int map(void *va);
int unmap(void *va);

// ulib.c
int strlen(const char *s);
void printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define PGSIZE 4096

#endif
