/* cli.h: the kurier command. main.c dispatches "kurier NOUN VERB ..." to one
 * cmd_*() per noun, and "sendmail" / "mailq" by argv[0]. Each cmd_*() gets argv
 * starting at the noun, prints its own usage on bad arguments, and returns the exit
 * status (0 ok, 1 failed, 2 usage). */
#ifndef KURIER_CLI_H
#define KURIER_CLI_H

struct kconf;

/* The config file chosen with -c FILE, $KURIER_CONF, or /etc/kurier/kurier.conf. */
const char *cli_conf_path(void);
/* Load it; on errors prints them all ("FILE:LINE:COL: ...") and exits 1. */
struct kconf *cli_load_conf(void);

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

#endif
