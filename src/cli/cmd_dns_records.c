/* cmd_dns_records.c: "kurier dns records DOMAIN [--check]" (stub) */
#include "core/compat.h"

#include "cli/cli.h"

int cmd_dns_records(int argc, char **argv)
{
    return 2;
}
