/* segment.c: the record header of the spool's segment files (format in segment.h). */
#include "core/compat.h"

#include "core/core.h"
#include "queue/segment.h"

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void seg_rec_encode(const struct seg_rec *r, unsigned char out[SEG_HDR])
{
    memset(out, 0, SEG_HDR);
    memcpy(out, SEG_MAGIC, 4);
    out[4] = (unsigned char)r->type;
    put32(out + 8, r->len);
    put32(out + 12, r->pcrc);
    memcpy(out + 16, r->id, strnlen(r->id, QUEUE_ID_LEN));
    put32(out + 32, crc32c(0, out, 32));
}

int seg_rec_decode(const unsigned char in[SEG_HDR], struct seg_rec *r, const char **why)
{
    static const unsigned char zero[SEG_HDR];
    if (memcmp(in, zero, SEG_HDR) == 0) return 0;
    *why = NULL;
    if (memcmp(in, SEG_MAGIC, 4) != 0)
        *why = "no record header";
    else if (get32(in + 32) != crc32c(0, in, 32))
        *why = "header checksum mismatch";
    else if (in[5] || in[6] || in[7] || get32(in + 36) || in[16 + QUEUE_ID_LEN] ||
             in[17 + QUEUE_ID_LEN])
        *why = "bad header padding";
    if (*why) return -1;
    memset(r, 0, sizeof *r);
    r->type = (enum seg_type)in[4];
    r->len = get32(in + 8);
    r->pcrc = get32(in + 12);
    memcpy(r->id, in + 16, QUEUE_ID_LEN);
    r->id[QUEUE_ID_LEN] = '\0';
    if (r->type != SEG_CONTENT && r->type != SEG_ENV && r->type != SEG_REMOVE)
        *why = "unknown record type";
    else if (!spool_id_valid(r->id))
        *why = "bad queue ID";
    else if (r->type == SEG_REMOVE && r->len != 0)
        *why = "removal record with a payload";
    return *why ? -1 : 1;
}
