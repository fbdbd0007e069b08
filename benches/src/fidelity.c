/* fidelity.c: the kernel side of benches/kernel-fidelity.sh.
 *
 * usage: fidelity SIZE_MIB PATTERN OP [SEED]
 *
 * The shape of the swapvm workload the script runs (kind = "phases"):
 * map SIZE_MIB of private anonymous memory (MADV_NOHUGEPAGE: order-0
 * folios only, as swapvm's default machine has), then
 *   touch  store to every 4 KiB page once, in order;
 *   pass1  one access per page on average: as many accesses as pages,
 *   pass2  the same again,
 *          PATTERN `sequential` (pages 0..N-1 in order, each pass from 0),
 *          `random` (uniform) or `hotcold` (with probability 0.8 a uniform
 *          page of the first 20% of the region, else a uniform page of the
 *          other 80%, as swapvm's hotcold picks them), every access a load
 *          (OP `read`) or a store (OP `write`);
 *   read   a load of every page, in order;
 * then exit. Random numbers: xorshift64* seeded with SEED (default 1).
 *
 * Prints one line per phase and a `total` line:
 *   PHASE SECONDS pswpin pswpout pgmajfault swap_ra swap_ra_hit cg_pgmajfault
 * the deltas of /proc/vmstat over the phase (machine-wide) and, with
 * FIDELITY_CG_STAT naming a memory cgroup's memory.stat, that cgroup's own
 * pgmajfault delta (else -1). Reading the counters between phases costs a
 * few system calls; nothing is read inside a phase. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define NV 5
static const char *const names[NV] = { "pswpin", "pswpout", "pgmajfault", "swap_ra",
				       "swap_ra_hit" };

struct snap {
	double t;
	long long v[NV];
	long long cg;
};

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* Value of KEY in a "key value" file, or -1. */
static void read_keys(const char *path, const char *const *keys, int n, long long *out)
{
	char k[128];
	long long v;
	for (int i = 0; i < n; i++)
		out[i] = -1;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	while (fscanf(f, "%127s %lld", k, &v) == 2)
		for (int i = 0; i < n; i++)
			if (strcmp(k, keys[i]) == 0)
				out[i] = v;
	fclose(f);
}

static void take(struct snap *s)
{
	static const char *const maj[1] = { "pgmajfault" };
	const char *cg = getenv("FIDELITY_CG_STAT");
	read_keys("/proc/vmstat", names, NV, s->v);
	s->cg = -1;
	if (cg && *cg)
		read_keys(cg, maj, 1, &s->cg);
	s->t = now();
}

static void report(const char *phase, const struct snap *a, const struct snap *b)
{
	printf("%s %.3f", phase, b->t - a->t);
	for (int i = 0; i < NV; i++)
		printf(" %lld", b->v[i] - a->v[i]);
	printf(" %lld\n", (a->cg < 0 || b->cg < 0) ? -1LL : b->cg - a->cg);
	fflush(stdout);
}

static uint64_t rng;

static uint64_t next(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [0, n) (Lemire's multiply-shift; the bias is below 2^-34
 * for regions under 2^30 pages). */
static uint64_t below(uint64_t n)
{
	return (uint64_t)(((unsigned __int128)next() * n) >> 64);
}

enum pattern { SEQ, RANDOM, HOTCOLD };

int main(int argc, char **argv)
{
	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: fidelity SIZE_MIB sequential|random|hotcold read|write [SEED]\n");
		return 2;
	}
	uint64_t pages = strtoull(argv[1], NULL, 10) * 256;
	enum pattern pat;
	if (strcmp(argv[2], "sequential") == 0)
		pat = SEQ;
	else if (strcmp(argv[2], "random") == 0)
		pat = RANDOM;
	else if (strcmp(argv[2], "hotcold") == 0)
		pat = HOTCOLD;
	else {
		fprintf(stderr, "fidelity: unknown pattern %s\n", argv[2]);
		return 2;
	}
	int write;
	if (strcmp(argv[3], "read") == 0)
		write = 0;
	else if (strcmp(argv[3], "write") == 0)
		write = 1;
	else {
		fprintf(stderr, "fidelity: unknown op %s\n", argv[3]);
		return 2;
	}
	rng = argc == 5 ? strtoull(argv[4], NULL, 10) : 1;
	if (rng == 0)
		rng = 1;
	if (pages < 2) {
		fprintf(stderr, "fidelity: region too small\n");
		return 2;
	}
	/* The hot set: the first 20% of the region (at least one page, and at
	 * least one cold page), as swapvm's hotcold sizes it. */
	uint64_t hot = (uint64_t)((double)pages * 0.2);
	if (hot < 1)
		hot = 1;
	if (hot > pages - 1)
		hot = pages - 1;
	/* 0.8 as a threshold on 53 random bits, as swapvm's chance() draws. */
	const uint64_t hot_cut = (uint64_t)(0.8 * (double)(1ULL << 53));

	volatile uint64_t *m = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	madvise((void *)m, pages * 4096, MADV_NOHUGEPAGE);

	struct snap s0, a, b;
	uint64_t sum = 0;
	take(&s0);
	a = s0;
	/* Nonzero words: a zero-filled page would not be written to swap
	 * (the swap zeromap). */
	for (uint64_t i = 0; i < pages; i++)
		m[i * 512] = i + 1;
	take(&b);
	report("touch", &a, &b);
	for (int pass = 1; pass <= 2; pass++) {
		a = b;
		for (uint64_t i = 0; i < pages; i++) {
			uint64_t p;
			if (pat == SEQ)
				p = i;
			else if (pat == RANDOM)
				p = below(pages);
			else if ((next() >> 11) < hot_cut)
				p = below(hot);
			else
				p = hot + below(pages - hot);
			if (write)
				m[p * 512] = i + 2;
			else
				sum += m[p * 512];
		}
		take(&b);
		report(pass == 1 ? "pass1" : "pass2", &a, &b);
	}
	a = b;
	for (uint64_t i = 0; i < pages; i++)
		sum += m[i * 512];
	take(&b);
	report("read", &a, &b);
	report("total", &s0, &b);
	/* Keep the loads. */
	if (sum == 42)
		fprintf(stderr, "%llu\n", (unsigned long long)sum);
	return 0;
}
