/* deliver.h: transports. One result type for all; each transport blocks and runs on
 * a worker thread. Today: maildir. Next: lmtp, remote smtp. */
#ifndef KURIER_DELIVER_H
#define KURIER_DELIVER_H

#include <stddef.h>

enum deliver_status { DELIVER_OK = 0, DELIVER_TEMP, DELIVER_PERM };

struct deliver_result {
    enum deliver_status status;
    char dsn[8];     /* "2.0.0", "4.2.2", "5.1.1" */
    char text[512];  /* "delivered to maildir", or the reason / remote reply */
    char relay[300]; /* "local", "mx.example.org[192.0.2.7]:25" */
};

struct deliver_maildir_req {
    const char *root;        /* maildir_root */
    const char *address;     /* mailbox local@domain */
    long long quota;         /* bytes, 0 = none */
    const char *return_path; /* envelope sender, "" for <> */
    const char *orig_rcpt;   /* for Delivered-To: the mailbox address */
    int content_fd;          /* the queued message, read from offset 0 (pread) */
    const char *hostname;    /* for the unique file name */
    unsigned uid, gid;       /* owner of created dirs/files when running as root; 0 = keep */
};

/* Deliver one copy into <root>/<domain>/<local>/Maildir: write tmp/, fsync, link or
 * rename into new/, fsync new/. Adds "Return-Path:" and "Delivered-To:" on top.
 * Creates the Maildir (cur, new, tmp) when missing. Quota full -> DELIVER_TEMP 4.2.2
 * (over quota for good after the lifetime). Returns res->status. */
enum deliver_status deliver_maildir(const struct deliver_maildir_req *req,
                                    struct deliver_result *res);
/* Bytes used by a mailbox's Maildir (new + cur), -1 when unknown. For the RCPT-time
 * quota check. */
long long deliver_maildir_usage(const char *root, const char *address);

#endif
