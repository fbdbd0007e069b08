/* usemem.c: the kernel side of benches/usemem-vs-kernel.sh, the shape of
 * swapvm's usemem workload: map SIZE_MIB of anonymous memory, store to
 * every 4 KiB page once, then make one pass of as many uniform random page
 * accesses (xorshift64, seed 1), half of them stores. Prints the wall time
 * of the whole run in seconds, a checksum bit, and the wall time of the
 * first (storing) pass in seconds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: usemem SIZE_MIB\n");
		return 2;
	}
	uint64_t pages = strtoull(argv[1], NULL, 10) * 256;
	double t0 = now();
	volatile uint64_t *m = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	for (uint64_t i = 0; i < pages; i++)
		m[i * 512] = i + 1;
	double t1 = now();
	uint64_t x = 1, sum = 0;
	for (uint64_t i = 0; i < pages; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t p = (x >> 1) % pages;
		if (x & 1)
			m[p * 512] = i;
		else
			sum += m[p * 512];
	}
	printf("%.3f %llu %.3f\n", now() - t0, (unsigned long long)(sum & 1), t1 - t0);
	return 0;
}
