/* segment.h: the records of the spool's segment files (queue/NNNNNNNNNN.seg): their
 * header, written and checked here (pure, no files); spool.c owns the files. Internal
 * to queue/.
 *
 * A segment is a run of records, each a 40-byte header and then its payload:
 *
 *   byte  size  field
 *   0     4     magic "KQR1"
 *   4     1     type: 'C' content (the message as we deliver it), 'E' envelope
 *               (envelope.c's text; a later one replaces the earlier), 'R' removed
 *               (no payload)
 *   5     3     zero
 *   8     4     payload length in bytes, little endian
 *   12    4     CRC-32C of the payload, little endian
 *   16    16    the queue ID, padded with NULs
 *   32    4     CRC-32C of bytes 0..31, little endian
 *   36    4     zero
 *
 * The rest of a preallocated segment reads as zeros: a header of zeros ends it. A
 * header or payload whose checksum does not match (a write cut short by a crash or
 * power loss, garbled bytes) ends what is read of the segment. */
#ifndef KURIER_SEGMENT_H
#define KURIER_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "queue/queue.h"

#define SEG_HDR 40
#define SEG_MAGIC "KQR1"

enum seg_type { SEG_CONTENT = 'C', SEG_ENV = 'E', SEG_REMOVE = 'R' };

struct seg_rec {
    enum seg_type type;
    uint32_t len;  /* payload bytes */
    uint32_t pcrc; /* crc32c() of the payload */
    char id[QUEUE_ID_LEN + 1];
};

/* The header of r into out. */
void seg_rec_encode(const struct seg_rec *r, unsigned char out[SEG_HDR]);
/* Read a header: 1 a good one (into r), 0 all zeros (the written part ends here), -1
 * not a header (*why, static, says what is wrong). */
int seg_rec_decode(const unsigned char in[SEG_HDR], struct seg_rec *r, const char **why);

#endif
