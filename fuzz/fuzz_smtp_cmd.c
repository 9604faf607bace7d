/* fuzz_smtp_cmd.c: smtp_parse_cmd on arbitrary lines; checks the result invariants. */
#include "core/compat.h"

#include <stdint.h>

#include "core/core.h"
#include "smtp/smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct smtp_cmd cmd;
    struct smtp_err err;
    int r = smtp_parse_cmd((const char *)data, size, &cmd, &err);
    if (r == 0) {
        if (cmd.verb == SMTP_V_UNKNOWN) abort();
        if ((cmd.verb == SMTP_V_MAIL || cmd.verb == SMTP_V_RCPT) && !cmd.path.local &&
            !(cmd.path.flags & ADDR_F_NULL))
            abort();
        if (cmd.path.local) free(addr_format(&cmd.path));
    } else {
        if (err.code < 500 || err.code > 599 || !err.enh || !err.text[0]) abort();
        if (memchr(err.text, '\r', strlen(err.text)) || memchr(err.text, '\n', strlen(err.text)))
            abort();
        if (cmd.arg || cmd.path.local || cmd.envid || cmd.auth || cmd.orcpt) abort();
    }
    (void)smtp_verb_name(cmd.verb);
    smtp_cmd_clear(&cmd);
    char *x = smtp_xtext_decode((const char *)data, size);
    free(x);
    return 0;
}
