/* transfer.h: the queue hand-over stream of "kurier queue export" and "kurier queue
 * import" (format in docs/queue.md, "Moving the queue to another node"). Pure: the
 * bytes go out and come in through the caller's callbacks; no files, no globals.
 *
 *   kurier-queue-stream 1 node=NODE
 *   message ID envelope=N content=M
 *   <N bytes: the envelope in the spool's format (spool_env_format)>
 *   <M bytes: the message as queued>
 *   sha256 HEX          (of the message line, the envelope and the content)
 *   ... one such record per message ...
 *   end count=COUNT sha256=HEX   (of every byte of the stream before this line)
 *
 * Lines end in LF. NODE names the exporting node (letters, digits, ".-_:"), ID is its
 * queue ID there. */
#ifndef KURIER_TRANSFER_H
#define KURIER_TRANSFER_H

#include <stddef.h>

#define TRANSFER_MAGIC "kurier-queue-stream 1"
#define TRANSFER_NODE_MAX 255
#define TRANSFER_ENV_MAX (4u * 1024 * 1024) /* envelope bytes of one message */
#define TRANSFER_CONTENT_MAX (1ull << 40)   /* content bytes of one message */

struct spool_env;

/* --- writing ----------------------------------------------------------------- */
struct transfer_enc;
/* write(arg, p, n) puts n bytes out: 0 done, -1 failed (the encoder then fails too). */
typedef int (*transfer_write_fn)(void *arg, const void *p, size_t n);
/* 1 when node may name a node in the stream (1 to TRANSFER_NODE_MAX bytes of
 * letters, digits and ".-_:"). */
int transfer_node_valid(const char *node);
/* A new encoder; writes the first line. NULL when node is not valid or the write
 * failed. write and arg are borrowed until transfer_enc_free. */
struct transfer_enc *transfer_enc_new(const char *node, transfer_write_fn write, void *arg);
/* One message: its envelope (env->id is its ID here) and then content_len bytes of
 * content through transfer_enc_content, then transfer_enc_message_end. Each 0 done,
 * -1 failed: a write failed, env->id is not a queue ID, or (message_end) the content
 * was not exactly content_len bytes. After -1 the stream is unusable. */
int transfer_enc_message(struct transfer_enc *e, const struct spool_env *env,
                         unsigned long long content_len);
int transfer_enc_content(struct transfer_enc *e, const void *p, size_t n);
int transfer_enc_message_end(struct transfer_enc *e);
/* The end line (count and checksum of the whole stream). 0 done, -1 failed. */
int transfer_enc_finish(struct transfer_enc *e);
/* Messages written so far, and bytes. */
unsigned long long transfer_enc_count(const struct transfer_enc *e);
unsigned long long transfer_enc_bytes(const struct transfer_enc *e);
void transfer_enc_free(struct transfer_enc *e); /* NULL-safe */

/* --- reading ----------------------------------------------------------------- */
struct transfer_dec_ops {
    /* Up to n bytes of the stream into p: the count (> 0), 0 at its end, -1 when
     * reading failed. */
    long (*read)(void *arg, void *p, size_t n);
    /* A message starts (its envelope parsed and checked; env and node are borrowed
     * until end runs or the decode fails). Returns 0 to take its content, 1 to skip
     * it (its content is still read and its checksum checked, but content and end are
     * not called), -1 to stop the decode (which fails with err from the callback). */
    int (*begin)(void *arg, const char *node, const struct spool_env *env,
                 unsigned long long content_len, char *err, size_t errsize);
    /* Content bytes of the message begun (0 done, -1 stop, err set). */
    int (*content)(void *arg, const void *p, size_t n, char *err, size_t errsize);
    /* The message is complete and its checksum matches (0 done, -1 stop, err set). */
    int (*end)(void *arg, char *err, size_t errsize);
};
struct transfer_stats {
    unsigned long long count;   /* messages read (skipped ones included) */
    unsigned long long skipped; /* of them, begin said 1 */
    unsigned long long bytes;   /* bytes of the stream read */
    char node[TRANSFER_NODE_MAX + 1];
};
/* Read a whole stream through ops. 0 when it is complete (end line read, counts and
 * checksums right, nothing after it); -1 when it is not, with err naming the offset
 * and the message (its number and ID) where it went wrong: "cut short", "checksum
 * mismatch", a malformed line or envelope, a read error, or what a callback said.
 * Messages before the bad spot have had their end callback; the caller decides
 * whether to keep them (kurier queue import does not). *st is filled either way. */
int transfer_decode(const struct transfer_dec_ops *ops, void *arg, struct transfer_stats *st,
                    char *err, size_t errsize);

#endif
