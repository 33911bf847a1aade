/*
 * libFuzzer harness for src/detect.c: every detector over arbitrary bytes,
 * each input in a buffer of exactly its size, so that AddressSanitizer sees
 * a read one byte past the end (inside the server such a read would land in
 * the rest of a jsonb datum and go unnoticed).  It also checks what the
 * detectors promise: spans in bounds, non-empty, ordered, not overlapping;
 * and that the cheap gates the sanitizer runs first (ta_detect_possible,
 * ta_detector_min_length) never rule out a string a detector finds
 * something in.
 *
 *   test/fuzz/run.sh [seconds]
 *
 * The few server routines detect.c calls are provided here.
 */
#include "postgres.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "detect.h"

void *
palloc(Size size)
{
	return malloc(size);
}

void *
repalloc(void *pointer, Size size)
{
	return realloc(pointer, size);
}

void
pfree(void *pointer)
{
	free(pointer);
}

bool
errstart_cold(int elevel, const char *domain)
{
	abort();
}

bool
errstart(int elevel, const char *domain)
{
	abort();
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	abort();
}

int
errmsg_internal(const char *fmt,...)
{
	return 0;
}

volatile sig_atomic_t InterruptPending = false;

void
ProcessInterrupts(void)
{
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *buf = malloc(size ? size : 1);

	memcpy(buf, data, size);
	for (int d = 0; d < TA_DETECT__COUNT; d++)
	{
		TaSpanList	spans = {0};

		ta_detect((TaDetector) d, buf, (int) size, d, &spans);
		for (int i = 0; i < spans.n; i++)
		{
			TaSpan	   *s = &spans.items[i];

			if (s->start < 0 || s->end > (int) size || s->start >= s->end ||
				(i > 0 && s->start < spans.items[i - 1].end))
			{
				fprintf(stderr, "detector %s: bad span %d [%d, %d) of %zu bytes\n",
						ta_detector_name((TaDetector) d), i, s->start, s->end, size);
				abort();
			}
		}
		if (spans.n > 0 &&
			(!ta_detect_possible((TaDetector) d, buf, (int) size) ||
			 (int) size < ta_detector_min_length((TaDetector) d)))
		{
			fprintf(stderr, "detector %s: found %d spans in %zu bytes its gate rules out\n",
					ta_detector_name((TaDetector) d), spans.n, size);
			abort();
		}
		free(spans.items);
	}
	free(buf);
	return 0;
}
