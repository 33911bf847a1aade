/*-------------------------------------------------------------------------
 *
 * detect.h
 *		Secrets and personal data found by their value (detect.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_DETECT_H
#define TA_DETECT_H

typedef enum TaDetector
{
	TA_DETECT_BEARER,
	TA_DETECT_JWT,
	TA_DETECT_PEM_PRIVATE_KEY,
	TA_DETECT_API_KEY,
	TA_DETECT_US_SSN,
	TA_DETECT_CARD_NUMBER,
	TA_DETECT_URL_CREDENTIALS,
	TA_DETECT__COUNT
} TaDetector;

/* What a detector found: a byte span of the string, and the rule it is for. */
typedef struct TaSpan
{
	int			start;			/* byte offset */
	int			end;			/* byte offset, exclusive */
	int			rule;			/* index of the value rule that found it */
} TaSpan;

typedef struct TaSpanList
{
	TaSpan	   *items;
	int			n;
	int			cap;
} TaSpanList;

extern const char *ta_detector_name(TaDetector d);
extern bool ta_detector_from_name(const char *name, TaDetector *d);
extern void ta_span_add(TaSpanList *list, int start, int end, int rule);
extern int	ta_detector_min_length(TaDetector d);
extern bool ta_detect_possible(TaDetector d, const char *s, int len);
extern void ta_detect(TaDetector d, const char *s, int len, int rule,
					  TaSpanList *out);

#endif							/* TA_DETECT_H */
