/* compat.h: included first by every .c file. Poisons unbounded string functions
 * (STYLE.md, Buffers) so that using one fails the build. */
#ifndef KURIER_COMPAT_H
#define KURIER_COMPAT_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC poison strcpy strcat sprintf vsprintf gets strtok

#endif
