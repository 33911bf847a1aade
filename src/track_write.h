/*-------------------------------------------------------------------------
 *
 * track_write.h
 *		The insert of a data_changes row without SPI (track_write.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_TRACK_WRITE_H
#define TA_TRACK_WRITE_H

extern void ta_track_write_row(Oid relid, Datum *values, bool *nulls, int natts);
extern void ta_track_write_release(void);

#endif							/* TA_TRACK_WRITE_H */
