/* sqlite_int.h: private to store/ (sqlite.c, sqlite_dir.c, sqlite_state.c): the open
 * database and the statement helpers sqlite.c lends the directory (sqlite_dir.c) and
 * the policy state (sqlite_state.c). Not for other modules: their contract is store.h. */
#ifndef KURIER_STORE_SQLITE_INT_H
#define KURIER_STORE_SQLITE_INT_H

#include <sqlite3.h>
#include <stddef.h>

/* Prepared statements kept for reuse, by SQL text: preparing costs more than running
 * the small lookups made for every message (callgrind: about 150,000 instructions). */
#define STMT_CACHE 48

struct store {
    sqlite3 *db;
    struct {
        char *sql;
        sqlite3_stmt *s;
        int busy; /* between stmt_open() and stmt_close() */
    } cache[STMT_CACHE];
    int ncache;
    struct dir_pg *pg;         /* the directory is in PostgreSQL (dir_pg.c); NULL: in db */
    struct redis_state *redis; /* shared policy state (state_redis.c), or NULL */
};

#define ADDR_SIZE 320

/* Hold / release the database mutex over a whole call (sqlite.c explains). */
void store_lock(struct store *st);
void store_unlock(struct store *st);

/* Every statement goes through stmt_open(), then stmt_row() for queries, then
 * stmt_close(). stmt_open(): lock, prepare sql (cached) and bind the n strings of v to
 * ?1..?n; NULL when prepare failed, the lock held either way. stmt_row(): 1 a row is
 * ready, 0 no more rows, -1 error (also for s NULL). stmt_close(): finish s, unlock. */
sqlite3_stmt *stmt_open(struct store *st, const char *sql, const char *const *v, int n);
int stmt_row(sqlite3_stmt *s);
void stmt_close(struct store *st, sqlite3_stmt *s);
/* err = "database error: " and SQLite's message; returns -1. */
int stmt_fail(struct store *st, char *err, size_t errsize);
/* Run s, a statement that returns no rows, and stmt_close() it. When fmt is non-NULL
 * the statement must change a row: if it changed none or would duplicate a primary
 * key, err gets the message from fmt. 0 done, -1 (err filled). */
int stmt_done(struct store *st, sqlite3_stmt *s, char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* stmt_done() of sql with the n strings of v as parameters. */
int stmt_exec(struct store *st, const char *sql, const char *const *v, int n, char *err,
              size_t errsize, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
/* The first column of the first row of a query with the n strings of v as
 * parameters, as an integer ("SELECT count(*) ..."); -1 on error. */
long long stmt_int(struct store *st, const char *sql, const char *const *v, int n);
/* Count rows of a "SELECT count(*) ... ?1" query. -1 on error. */
long long stmt_count(struct store *st, const char *sql, const char *a);

#endif
