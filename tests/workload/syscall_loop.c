/*
 * A paced syscall workload: calls getppid() COUNT times at RATE calls per
 * second (0: as fast as one core can), after a line arrives on stdin (so a
 * tracer can attach first), and prints how many calls it made.
 *
 *   syscall_loop COUNT RATE
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s COUNT RATE\n", argv[0]);
		return 2;
	}
	long count = atol(argv[1]);
	double rate = atof(argv[2]);
	char line[16];
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	double start = now();
	long done = 0;
	const long batch = 64;
	while (done < count) {
		long n = count - done < batch ? count - done : batch;
		for (long i = 0; i < n; i++)
			syscall(SYS_getppid);
		done += n;
		if (rate > 0) {
			double due = start + done / rate;
			double wait = due - now();
			if (wait > 0) {
				struct timespec ts = { (time_t)wait, (long)((wait - (time_t)wait) * 1e9) };
				nanosleep(&ts, NULL);
			}
		}
	}
	printf("%ld %.6f\n", done, now() - start);
	return 0;
}
