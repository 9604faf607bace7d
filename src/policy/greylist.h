/* greylist.h: private to src/policy/: the greylisting triplet decision, shared by
 * the greylist check (greylist.c) and sender verification (sender_verify.c), whose
 * failures are greylisted. */
#ifndef KURIER_POLICY_GREYLIST_H
#define KURIER_POLICY_GREYLIST_H

#include "policy/policy.h"

struct greylist_job;
/* Judge the triplet (client /24 or /64, sender, ctx->rcpt) of an RCPT: allowlisted
 * networks and sender domains (greylist { }) pass, else the directory's triplet
 * state decides (store_grey_check). done(arg, v) runs once on the loop, never
 * inside this call: POLICY_PASS, POLICY_GREYLIST (451 4.7.1 "Greylisted, try again in
 * N seconds"), or POLICY_TEMPFAIL on a database error. why: logged with the verdict
 * ("sender verification failed: ...", "greylist always"), copied. Returns a handle
 * for greylist_triplet_cancel() (done will not run). */
struct greylist_job *greylist_triplet_start(const struct policy_ctx *ctx, const char *why,
                                            void (*done)(void *arg, const struct policy_verdict *v),
                                            void *arg);
void greylist_triplet_cancel(struct greylist_job *j);

#endif
