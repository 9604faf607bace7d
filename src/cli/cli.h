/* cli.h: the kurier command. main.c dispatches "kurier NOUN VERB ..." to one
 * cmd_*() per noun, and "sendmail" / "mailq" by argv[0]. Each cmd_*() gets argv
 * starting at the noun, prints its own usage on bad arguments, and returns the exit
 * status (0 ok, 1 failed, 2 usage). */
#ifndef KURIER_CLI_H
#define KURIER_CLI_H

#include <stdio.h>
#include "core/buf.h"

struct kconf;
struct store;

/* commands.c: the command table. A command with subcommands (verbs) has them in a
 * list ending with a NULL name; args is the synopsis after the name, whose long
 * options ("--user") are the only ones cli_run() lets through. */
struct cli_verb {
    const char *name, *args, *summary;
};
struct cli_command {
    const char *name;
    int (*fn)(int argc, char **argv); /* argv starts at the command's name */
    const char *summary;
    const char *args;             /* without verbs: the synopsis */
    const struct cli_verb *verbs; /* NULL: none */
    int raw;                      /* sendmail, mailq: their own options, unchecked */
};
/* The command called name, or NULL. */
const struct cli_command *cli_command_find(const char *name);
/* Check argv (starting at the command's name) against the table: an unknown
 * subcommand or long option is a usage error naming it (with "did you mean"), as are
 * a word too many and a missing operand (counted from the synopsis: upper-case words
 * and choices out of brackets are required); --help prints the help; otherwise run
 * the command. Returns the exit status. */
int cli_run(const struct cli_command *c, int argc, char **argv);
/* Usage errors of main.c, named with the closest match; return 2. */
int cli_unknown_command(const char *word);
int cli_unknown_global_option(const char *word);
/* Every command with its subcommands, for "kurier help" and "kurier --help". */
void cli_help_all(FILE *out);

/* util.c: the config file chosen with -c FILE (main.c sets it with
 * cli_conf_set_path(); path borrowed for the run), $KURIER_CONF, or
 * /etc/kurier/kurier.conf. */
void cli_conf_set_path(const char *path);
const char *cli_conf_path(void);
/* The config's resolver ("" for the system's); the caller frees it. */
char *cli_conf_resolver(void);
/* Load it; on errors prints them all ("FILE:LINE:COL: ...") and exits 1. */
struct kconf *cli_load_conf(void);

/* Print "kurier: MESSAGE" on stderr; returns 1, the exit status for "failed". */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The directory database (store.h) named by the config, with that config. */
struct cli_dir {
    struct kconf *conf;
    struct store *st;
};
/* Load the config (cli_load_conf()) and open its directory, creating it when
 * missing. 0 done; -1 with the error printed and nothing held. */
int cli_dir_open(struct cli_dir *d);
/* Free both; the caller's struct itself stays. */
void cli_dir_close(struct cli_dir *d);

/* Overwrite a secret string with zeros and free it; NULL does nothing. */
void cli_wipe(char *s);

int cmd_config(int argc, char **argv);   /* config check [FILE] | dump | doc */
int cmd_domain(int argc, char **argv);   /* domain add|del|list|catchall */
int cmd_mailbox(int argc, char **argv);  /* mailbox add|del|list|passwd|quota */
int cmd_alias(int argc, char **argv);    /* alias add|del|list */
int cmd_queue(int argc, char **argv);    /* queue list|show|flush|delete|hold|release */
int cmd_sendmail(int argc, char **argv); /* sendmail(1) compatible, argv[0] included */
int cmd_mailq(int argc, char **argv);    /* mailq(1) compatible */
int cmd_tls(int argc, char **argv);      /* tls selfsigned HOST [--cert F] [--key F] [--force] */
int cmd_relay(int argc, char **argv);    /* relay add|del|list: per-sender smarthosts */
int cmd_smtp(int argc, char **argv);     /* smtp send --to HOST:PORT ... FILE */
int cmd_dns(int argc, char **argv);      /* dns lookup TYPE NAME [--resolver IP@PORT] */
int cmd_auth(int argc, char **argv);     /* auth blocks [--clear ADDRESS|ACCOUNT] */
int cmd_account(int argc, char **argv);  /* account status [USER] [--json] | unlock USER */
/* check-client IP [--helo H] [--from A] [--to B] [--listen ADDR] */
int cmd_check_client(int argc, char **argv);
/* greylist list [--json] | clear --all|IP|NET [--sender A] | allow IP|NET */
int cmd_greylist(int argc, char **argv);
int cmd_spf(int argc, char **argv);     /* spf check IP SENDER [--helo H] */
int cmd_replies(int argc, char **argv); /* replies classify TEXT | check [FILE] */
int cmd_rbl(int argc, char **argv);     /* rbl check IP|DOMAIN [--list L]... [--json] */
/* monitor status|history [ADDRESS] [--limit N]: the blocklist monitor's findings */
int cmd_monitor(int argc, char **argv);
/* egress status [--json] | bench|unbench ADDRESS [--destination D] [--for DUR] */
int cmd_egress(int argc, char **argv);
/* dkim keygen|rotate|retire|list|check: signing keys and their records (cmd_dkim.c) */
int cmd_dkim(int argc, char **argv);
/* dns records DOMAIN [--check]: what a hosted domain publishes (cmd_dns_records.c) */
int cmd_dns_records(int argc, char **argv);
/* newaliases(1), sendmail -bi: check the aliases file, make kurierd reload it */
int cmd_newaliases(int argc, char **argv);

/* One DNS question, blocking (cmd_dkim.c): type "txt", "mx" ("PREF HOST" strings) or
 * "ptr" (name: an IP address). resolver: NULL for the config's. The answer's strings
 * are new (cli_dns_answer_free()); status a dns_status. 0, or 1 when no resolver could
 * be set up (printed). */
#define CLI_DNS_MAX 32
struct cli_dns_answer {
    int status;
    const char *why;
    char *strs[CLI_DNS_MAX];
    size_t nstrs;
};
int cli_dns_ask(const char *resolver, const char *type, const char *name, struct cli_dns_answer *a);
void cli_dns_answer_free(struct cli_dns_answer *a);
/* cmd_dkim.c: print the TXT record of each DKIM key of domain; returns their number.
 * Check them in DNS, one line each ("DIFF " in front of a mismatch); 0 when all
 * match, 1 otherwise. */
int cli_dkim_records(const struct kconf *c, const char *domain);
int cli_dkim_records_count(const struct kconf *c, const char *domain);
int cli_dkim_check(const struct kconf *c, const char *domain, const char *resolver);
int cmd_help(int argc, char **argv);       /* help [--man] [COMMAND [SUBCOMMAND]] */
int cmd_completion(int argc, char **argv); /* completion bash */
int cmd_reload(int argc, char **argv);     /* reload: the daemon reads its config again */
int cmd_stop(int argc, char **argv);       /* stop: the daemon stops; waits for its exit */
/* log trace ID|MESSAGE-ID|ADDRESS [--file F]: a message's log lines (cmd_log.c) */
int cmd_log(int argc, char **argv);
/* directory export | import [FILE]: the directory as a text stream (cmd_directory.c) */
int cmd_directory(int argc, char **argv);
/* complaints list [--account A]: abuse complaints that came in (abuse/complaints.c) */
int cmd_complaints(int argc, char **argv);

/* --json output (json.c): one object per line, built whole then printed on stdout.
 * cli_json_begin() opens the object; cli_json_object()/cli_json_array() open a nested
 * one under key (NULL inside an array), cli_json_close() closes the innermost;
 * cli_json_end() closes what is open, prints the line and frees. A NULL string is
 * null; a time <= 0 is null, else "YYYY-MM-DDTHH:MM:SSZ" (UTC). */
#define CLI_JSON_DEPTH 8
struct cli_json {
    struct buf b;
    int depth;
    int n[CLI_JSON_DEPTH];
    char close[CLI_JSON_DEPTH];
};
void cli_json_begin(struct cli_json *j);
void cli_json_object(struct cli_json *j, const char *key);
void cli_json_array(struct cli_json *j, const char *key);
void cli_json_close(struct cli_json *j);
void cli_json_str(struct cli_json *j, const char *key, const char *val);
void cli_json_int(struct cli_json *j, const char *key, long long val);
void cli_json_bool(struct cli_json *j, const char *key, int val);
void cli_json_time(struct cli_json *j, const char *key, long long t);
void cli_json_end(struct cli_json *j);
/* Remove every "--json" from argv (argc updated); 1 when there was one. */
int cli_json_flag(int *argc, char **argv);

/* queue export and queue import (cmd_queue_transfer.c, called by cmd_queue()):
 * export writes the messages (all, or the nids IDs) as a stream on stdout and with
 * remove then deletes them here; import queues the messages of a stream on stdin.
 * Return the exit status. */
int queue_export(const struct kconf *conf, int all, char **ids, int nids, int remove);
int queue_import(const struct kconf *conf);

#endif
