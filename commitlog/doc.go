// Package commitlog is Herald's storage engine: append-only, segmented,
// checksummed, indexed partition logs on local disk. Topics, committed
// offsets, the event store, saga state and stream-processing state are all
// written to it. It has no network code.
//
// # Model
//
// A Store is a data directory; it holds many Logs (one per partition). A Log
// is a sequence of Kafka record batches (format v2, see package batch) with
// dense offsets assigned by the log. Batches are stored verbatim, so the
// Kafka protocol can serve fetches without re-encoding; only the base offset
// and the partition leader epoch (bytes the batch CRC does not cover) are
// rewritten on append.
//
// # Durability
//
// Each Log has a Durability mode. SyncAlways acknowledges an append after its
// bytes are fsynced; concurrent appends share fsyncs (group commit: appenders
// write under the log mutex and wait on the current sync round; one flusher
// goroutine fsyncs and completes the round). SyncInterval acknowledges after
// the write and fsyncs at least every interval. SyncUnsafeNone fsyncs only
// when a segment is sealed and at Close. The high-water mark readers see
// covers exactly what the mode has acknowledged. An fsync error fails the
// log: it refuses writes (ErrLogFailed) until reopened, because the page
// cache no longer tells what reached the disk.
//
// # Directory layout
//
//	DIR/FORMAT                 "herald-data-format 1\n"
//	DIR/LOCK                   flock(2) held while a process has the store open
//	DIR/recovery-points        per-log recovery points (see below)
//	DIR/logs/NAME/BASE.log     segment: header + record batches
//	DIR/logs/NAME/BASE.idx     sparse offset index of the segment
//	DIR/logs/NAME/BASE.tix     sparse time index of the segment
//
// BASE is the segment's first offset as 20 decimal digits. Files named
// BASE.log.cleaned or *.tmp are left by an interrupted compaction or state
// write and are removed on open.
//
// # File formats
//
// All integers are big-endian. Segment and index files share one 32-byte
// header:
//
//	+--------+---------+----------+------------+---------+--------------+
//	| magic  | version | reserved | base offset| file id | CRC-32C      |
//	| 8 B    | u16     | u16      | i64        | u64     | of bytes 0-27|
//	+--------+---------+----------+------------+---------+--------------+
//	magic: "HERALDLG" segment, "HERALDIX" offset index, "HERALDTX" time index
//
// The file id is random per segment file; an index names the id of the
// segment it indexes, so an index left over from a replaced file is never
// trusted. After the header a segment holds record batches back to back,
// and the active segment of a log with Options.Preallocate may end in
// zeros written ahead of its last batch (cut off when it is sealed):
//
//	+-------------+-------------+----------------+-------+-----+------------
//	| base offset | batch length| leader epoch=0 | magic | crc | attributes...
//	| i64         | i32         | i32            | i8=2  | u32 | (CRC-covered)
//	+-------------+-------------+----------------+-------+-----+------------
//
// The offset index holds 12-byte entries (offset - base u32, file position
// u32, CRC-32C of those 8 bytes), one per IndexIntervalBytes of segment; the
// time index holds 16-byte entries (timestamp i64, offset - base u32, CRC-32C
// of those 12 bytes) recording where the segment's running maximum timestamp
// rose, at most one per four intervals, plus the exact maximum when the
// segment is sealed. Entries strictly increase; a loader stops at the first
// that fails its checksum or does not increase, so a torn end of the active
// segment's index is harmless, and a sealed segment's index with any bad
// entry is rebuilt. In memory an entry costs 8 (offset) or 12 (time) bytes.
// Indexes are hints: any that is missing, stale or inconsistent is rebuilt by
// scanning its segment, and a reader checks that an entry points at the
// batch it names before trusting it.
//
// The recovery-points file is written whole by the atomic helper (temp file,
// fsync, rename, fsync directory):
//
//	"HERALDRP" | version u16 | reserved u16 | count u32 |
//	count x ( name length u16 | name | segment base i64 | file id u64 |
//	          position i64 | next offset i64 | max timestamp i64 | its rel u32 ) |
//	CRC-32C u32 of everything before
//
// Frozen: the magics, the header layout, the entry sizes, the batch format.
// A change to any of them is a new format version; this build reads the
// versions in readableVersions and writes the last one.
//
// # Recovery
//
// A log's recovery point says which position of which segment was last
// known durable (updated after every sync round, saved every
// CheckpointInterval and at Close). Opening a log validates only what lies
// after it, batch by batch (length bounds, dense offsets, leader epoch, CRC):
// a torn or corrupt tail is truncated at the last good batch, any later
// segments are removed, and the loss is reported in Log.Recovery, a log line
// and a metric. Without a recovery point (a new log, or a lost checkpoint
// file) the last two segments are validated: older ones were synced when
// they were sealed. Corruption before the recovery point, or found later in a
// sealed segment by a read, is a *CorruptionError, never a panic or a silent
// skip. Opening therefore costs time proportional to the unsynced tail.
//
// Zeros from the end of the last batch to the end of the file are unwritten
// space (preallocated, or an append none of whose bytes reached the disk),
// not data: they are reported as Recovery().UnwrittenBytes, not as a loss;
// the active segment keeps them for its next appends and a sealed one is
// trimmed. A batch torn before zeros is a torn tail like any other.
//
// # Cleaning
//
// Log.Clean (run by the store every CleanInterval) applies retention (whole
// segments, by age of their newest record and by total size) and compaction
// (keep the newest record per key; tombstones kept for DeleteRetention).
// Both touch only sealed, synced segments and replace them by swapping the
// segment list, so appends and reads never wait for them. A compaction
// rewrite is crash-safe at every step: the copy is written and fsynced as
// BASE.log.cleaned, the old indexes are removed, the copy is renamed over the
// original, and the directory is fsynced.
//
// # Concurrency
//
// Lock order: Store.mu, Log.mu, segment.imu, segment.fmu, fileCache.mu.
// Appends hold Log.mu while writing; readers take no log lock (they load the
// segment list and the high-water mark atomically). Open segment files are
// bounded per store (StoreOptions.MaxOpenFiles); cold segments are opened on
// first read, and their indexes are loaded then.
package commitlog
