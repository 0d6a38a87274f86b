# hhpse's entry: guests/include/highentry.h, linked at memlayout.h's KERNBASE.

#include "memlayout.h"
#include "highentry.h"
