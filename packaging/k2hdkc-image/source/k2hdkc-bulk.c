/*
 * k2hdkc-bulk: writes or reads N keys of a K2HDKC ring through a chmpx
 * slave, with several processes at once, and checks every value read.
 *
 *   k2hdkc-bulk write|read -conf INI -ctlport PORT -keys N [-first I]
 *               [-prefix P] [-tag T] [-size MIN-MAX] [-procs J] [-retries R]
 *               [-seconds S]
 *
 * Key i (i = I .. I+N-1) is "<P>-<i>"; its value is "<T>|<P>-<i>|" and
 * filler up to a length in MIN..MAX bytes, both drawn from a hash of
 * (P, i, T): a read knows the value every key must have, and tells the
 * latest write (tag T) from an older one. A write that fails is tried again
 * up to R times, as an application retries; a read that fails with an error
 * (not "no data") too. Each of the J processes opens its own permanent
 * handle on the slave (k2hdkc_open_chmpx_ex) and takes every J-th key.
 * J defaults to the number of CPUs, at least 2: one request at a time per
 * process, so a second process keeps the ring busy while the first waits
 * for its answer. Stock libchmpx makes a waiting client poll its queue
 * every 10 us, each process then keeps a CPU busy, and more processes than
 * CPUs slow the slave's chmpx down; the image's chmpx patch 0004 lets the
 * client sleep in poll() instead (tests/bench/keys measures both).
 *
 * With -seconds S it goes over the keys again and again until S seconds
 * have passed (a steady load while the ring changes), and counts every
 * request.
 *
 * Prints what it did, then one line for scripts:
 *   result op=write keys=N ops=N ok=N stale=0 missing=0 failed=0 retried=0 bytes=B seconds=S rate=R
 * Exit status: 0 every request done (a read: with its value), 1 not so, 2
 * usage.
 *
 * Written for this project's tests and benchmarks (tests/box/keys); the
 * k2hdkclinetool that ships with k2hdkc runs one request at a time.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <k2hdkc/k2hdkc.h>

#define MAX_PROCS 64
#define MAX_REPORTED 5

struct opts {
	bool write;
	const char *conf, *prefix, *tag;
	long ctlport, keys, first, size_min, size_max, procs, retries, seconds;
};

/* What one worker did; sent to the parent through a pipe. */
struct tally {
	long ops, ok, stale, missing, failed, retried, bytes;
	char first_bad[MAX_REPORTED][160];
	int nbad;
};

static void usage(const char *why)
{
	fprintf(stderr, "k2hdkc-bulk: %s\n"
		"usage: k2hdkc-bulk write|read -conf INI -ctlport PORT -keys N [-first I] [-prefix P]\n"
		"       [-tag T] [-size MIN-MAX] [-procs J] [-retries R] [-seconds S]\n", why);
	exit(2);
}

static long number(const char *name, const char *text, long lo, long hi)
{
	char *end = NULL;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (errno || !end || *end || v < lo || v > hi) {
		char msg[160];
		snprintf(msg, sizeof msg, "%s wants a number in %ld..%ld, not '%s'", name, lo, hi, text);
		usage(msg);
	}
	return v;
}

/* Prefix and tag go into keys and values: keep them to a safe alphabet. */
static bool plain(const char *s)
{
	for (; *s; s++) {
		if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') || ('0' <= *s && *s <= '9') ||
		      *s == '.' || *s == '_' || *s == ':' || *s == '-'))
			return false;
	}
	return true;
}

static struct opts parse(int argc, char **argv)
{
	struct opts o = {.prefix = "bulk", .tag = "v1", .ctlport = -1, .keys = -1, .first = 1,
			 .size_min = 100, .size_max = 1000, .procs = 0, .retries = 3};
	if (argc < 2)
		usage("no command");
	if (!strcmp(argv[1], "write"))
		o.write = true;
	else if (strcmp(argv[1], "read"))
		usage("the command is write or read");
	for (int i = 2; i < argc; i += 2) {
		const char *name = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!val)
			usage("an option without its value");
		if (!strcmp(name, "-conf"))
			o.conf = val;
		else if (!strcmp(name, "-ctlport"))
			o.ctlport = number(name, val, 1, 65535);
		else if (!strcmp(name, "-keys"))
			o.keys = number(name, val, 1, 1000000000L);
		else if (!strcmp(name, "-first"))
			o.first = number(name, val, 0, 1000000000L);
		else if (!strcmp(name, "-prefix"))
			o.prefix = val;
		else if (!strcmp(name, "-tag"))
			o.tag = val;
		else if (!strcmp(name, "-procs"))
			o.procs = number(name, val, 1, MAX_PROCS);
		else if (!strcmp(name, "-retries"))
			o.retries = number(name, val, 0, 100);
		else if (!strcmp(name, "-seconds"))
			o.seconds = number(name, val, 0, 86400);
		else if (!strcmp(name, "-size")) {
			char lo[24] = "";
			const char *dash = strchr(val, '-');
			if (!dash || dash - val >= (long)sizeof lo)
				usage("-size wants MIN-MAX");
			memcpy(lo, val, dash - val);
			o.size_min = number("-size MIN", lo, 1, 1 << 20);
			o.size_max = number("-size MAX", dash + 1, o.size_min, 1 << 20);
		} else
			usage("unknown option");
	}
	if (o.procs == 0) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		o.procs = cpus >= 2 ? cpus : 2;
		if (o.procs > MAX_PROCS)
			o.procs = MAX_PROCS;
	}
	if (!o.conf || o.ctlport < 0 || o.keys < 0)
		usage("-conf, -ctlport and -keys are required");
	if (!*o.prefix || !plain(o.prefix) || !*o.tag || !plain(o.tag))
		usage("-prefix and -tag: letters, digits and . _ : - only");
	return o;
}

/* FNV-1a over the parts that decide a value. */
static uint64_t fnv(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (h ^ 0xff) * 1099511628211ULL;
}

/* The value key i must hold after a write with tag T; returns its length. */
static size_t value_of(const struct opts *o, const char *key, char *buf, size_t cap)
{
	uint64_t h = fnv(fnv(14695981039346656037ULL, key), o->tag);
	size_t len = o->size_min + h % (uint64_t)(o->size_max - o->size_min + 1);
	if (len >= cap)
		len = cap - 1;
	int head = snprintf(buf, cap, "%s|%s|", o->tag, key);
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	for (size_t i = (size_t)head; i < len; i++) {
		h ^= h << 13, h ^= h >> 7, h ^= h << 17; /* xorshift */
		buf[i] = alphabet[h % 36];
	}
	if ((size_t)head > len)
		len = (size_t)head < cap ? (size_t)head : cap - 1;
	buf[len] = '\0';
	return len;
}

static double now(void);

static void note(struct tally *t, const char *key, const char *why)
{
	if (t->nbad < MAX_REPORTED)
		snprintf(t->first_bad[t->nbad++], sizeof t->first_bad[0], "%s (%s)", key, why);
}

static void pause_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static void one_key(const struct opts *o, k2hdkc_chmpx_h h, long i, char *want, size_t cap, struct tally *t)
{
	char key[96];
	snprintf(key, sizeof key, "%s-%ld", o->prefix, i);
	size_t len = value_of(o, key, want, cap);
	t->ops++;
	for (long attempt = 0;; attempt++) {
		if (o->write) {
			if (k2hdkc_pm_set_str_value(h, key, want)) {
				t->ok++, t->bytes += (long)len;
				return;
			}
		} else {
			char *got = NULL;
			if (k2hdkc_pm_get_str_value(h, key, &got)) {
				if (got && !strcmp(got, want))
					t->ok++, t->bytes += (long)len;
				else
					t->stale++, note(t, key, got ? "another value" : "empty value");
				free(got);
				return;
			}
			free(got);
			if (GET_DKC_RES_SUBCODE(k2hdkc_get_res_code(h)) == DKC_RES_SUBCODE_NODATA) {
				t->missing++, note(t, key, "not found");
				return;
			}
		}
		if (attempt >= o->retries) {
			char why[48];
			snprintf(why, sizeof why, "%s failed, code 0x%llx", o->write ? "set" : "get",
				 (unsigned long long)k2hdkc_get_res_code(h));
			t->failed++, note(t, key, why);
			return;
		}
		t->retried++;
		pause_ms(100 << (attempt < 4 ? attempt : 4));
	}
}

static struct tally worker(const struct opts *o, long nth)
{
	struct tally t = {0};
	/* A slave busy attaching another client can refuse one for a moment. */
	k2hdkc_chmpx_h h = K2HDKC_INVALID_HANDLE;
	for (int attempt = 0; attempt < 5 && h == K2HDKC_INVALID_HANDLE; attempt++) {
		if (attempt)
			pause_ms(200);
		h = k2hdkc_open_chmpx_ex(o->conf, (short)o->ctlport, false, false, true);
	}
	if (h == K2HDKC_INVALID_HANDLE) {
		t.failed = (o->keys - nth + o->procs - 1) / o->procs;
		note(&t, "-", "could not open the chmpx slave (is it up, and is this its IPC namespace?)");
		return t;
	}
	size_t cap = (size_t)o->size_max + 200;
	char *want = malloc(cap);
	if (!want) {
		t.failed = 1;
		note(&t, "-", "out of memory");
	} else {
		double until = o->seconds > 0 ? now() + o->seconds : 0;
		do {
			for (long i = o->first + nth; i < o->first + o->keys; i += o->procs) {
				one_key(o, h, i, want, cap, &t);
				if (until > 0 && now() >= until)
					break;
			}
		} while (until > 0 && now() < until);
	}
	free(want);
	k2hdkc_close_chmpx_ex(h, true);
	return t;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct opts o = parse(argc, argv);
	if (o.procs > o.keys)
		o.procs = o.keys;
	k2hdkc_set_debug_level_silent();
	double started = now();
	int fds[MAX_PROCS];
	pid_t pids[MAX_PROCS];
	for (long j = 0; j < o.procs; j++) {
		int p[2];
		if (pipe(p)) {
			perror("k2hdkc-bulk: pipe");
			return 1;
		}
		pids[j] = fork();
		if (pids[j] < 0) {
			perror("k2hdkc-bulk: fork");
			return 1;
		}
		if (pids[j] == 0) {
			close(p[0]);
			struct tally t = worker(&o, j);
			ssize_t n = write(p[1], &t, sizeof t);
			_exit(n == (ssize_t)sizeof t ? 0 : 1);
		}
		close(p[1]);
		fds[j] = p[0];
	}
	struct tally sum = {0};
	char bad[MAX_REPORTED][160];
	int nbad = 0;
	for (long j = 0; j < o.procs; j++) {
		struct tally t;
		ssize_t n = read(fds[j], &t, sizeof t);
		int status = 0;
		waitpid(pids[j], &status, 0);
		close(fds[j]);
		if (n != (ssize_t)sizeof t) {
			/* A worker that died (a crash in the library) did nothing we can count as done. */
			sum.failed += (o.keys - j + o.procs - 1) / o.procs;
			if (nbad < MAX_REPORTED)
				snprintf(bad[nbad++], sizeof bad[0], "worker %ld ended without a report (status 0x%x)", j, status);
			continue;
		}
		sum.ops += t.ops, sum.ok += t.ok, sum.stale += t.stale, sum.missing += t.missing;
		sum.failed += t.failed, sum.retried += t.retried, sum.bytes += t.bytes;
		for (int k = 0; k < t.nbad && nbad < MAX_REPORTED; k++)
			memcpy(bad[nbad++], t.first_bad[k], sizeof bad[0]);
	}
	double took = now() - started;
	const char *op = o.write ? "write" : "read";
	for (int k = 0; k < nbad; k++)
		fprintf(stderr, "k2hdkc-bulk: %s: %s\n", op, bad[k]);
	printf("result op=%s keys=%ld ops=%ld ok=%ld stale=%ld missing=%ld failed=%ld retried=%ld bytes=%ld seconds=%.3f rate=%.0f\n",
	       op, o.keys, sum.ops, sum.ok, sum.stale, sum.missing, sum.failed, sum.retried, sum.bytes, took,
	       took > 0 ? sum.ok / took : 0.0);
	/* A worker that died counted its keys as failed, not as ops. */
	return sum.ok == sum.ops && sum.failed == 0 && sum.ok >= (o.seconds > 0 ? 1 : o.keys) ? 0 : 1;
}
