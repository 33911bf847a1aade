/*
 * libFuzzer harness for the external verifier's JSON reading and canonical
 * writing (verifier/json.c on yajl, verifier/canonical.c): arbitrary bytes,
 * each input in a buffer of exactly its size so that AddressSanitizer sees
 * a read past the end.  The verifier reads digest files and database rows
 * it cannot trust.  Besides not crashing, it checks what the spec promises:
 *
 *   - the canonical text of anything accepted parses again and is its own
 *     canonical text (numbers, key order and escapes are a fixed point);
 *   - it holds no byte below 0x20 (no whitespace but spaces in strings);
 *   - canonical_number() on the raw bytes never crashes, and what it
 *     accepts is a fixed point as well.
 *
 *   test/fuzz/run.sh [seconds] json
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static void
check_fixed_point(const Buf *canon)
{
	char		err[256];
	JsonValue  *again = json_parse((const char *) canon->data, canon->len,
								   err, sizeof(err));
	Buf			twice;
	size_t		i;

	if (again == NULL)
	{
		fprintf(stderr, "canonical text does not parse: %s\n%.*s\n", err,
				(int) canon->len, (const char *) canon->data);
		abort();
	}
	buf_init(&twice);
	canonical_json(again, &twice);
	json_free(again);
	if (bytes_cmp(twice.data, twice.len, canon->data, canon->len) != 0)
	{
		fprintf(stderr, "not a fixed point:\n%.*s\n%.*s\n",
				(int) canon->len, (const char *) canon->data,
				(int) twice.len, (const char *) twice.data);
		abort();
	}
	buf_free(&twice);
	for (i = 0; i < canon->len; i++)
	{
		if (canon->data[i] < 0x20)
			abort();
	}
}

static void
check_number(const uint8_t *data, size_t size)
{
	Buf			once;
	Buf			twice;

	buf_init(&once);
	buf_init(&twice);
	if (canonical_number((const char *) data, size, &once))
	{
		if (!canonical_number((const char *) once.data, once.len, &twice) ||
			bytes_cmp(once.data, once.len, twice.data, twice.len) != 0)
		{
			fprintf(stderr, "number not a fixed point: %.*s -> %.*s\n",
					(int) once.len, (const char *) once.data,
					(int) twice.len, (const char *) twice.data);
			abort();
		}
	}
	buf_free(&once);
	buf_free(&twice);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *copy = malloc(size ? size : 1);
	char		err[256];
	JsonValue  *v;

	memcpy(copy, data, size);
	v = json_parse(copy, size, err, sizeof(err));
	if (v != NULL)
	{
		Buf			canon;

		buf_init(&canon);
		canonical_json(v, &canon);
		json_free(v);
		check_fixed_point(&canon);
		buf_free(&canon);
	}
	check_number((const uint8_t *) copy, size);
	free(copy);
	return 0;
}
