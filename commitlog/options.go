package commitlog

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// SyncMode says when appended bytes are fsynced.
type SyncMode uint8

const (
	// SyncAlways acknowledges an append only after its bytes are fsynced.
	// Concurrent appends share fsyncs (group commit).
	SyncAlways SyncMode = iota
	// SyncInterval acknowledges an append once it is written to the
	// operating system and fsyncs at least every Durability.Interval. A
	// machine crash can lose up to one interval of acknowledged writes; a
	// process crash loses nothing.
	SyncInterval
	// SyncUnsafeNone never fsyncs except at Close and when a segment is
	// sealed by Close. A machine crash can lose any amount of acknowledged
	// data. For scratch data and benchmarks only.
	SyncUnsafeNone
	// SyncMemory is not a commitlog mode: it names the broker's in-memory
	// topics, which never reach a Log. ParseDurability accepts "memory" so
	// that one flag parser serves both.
	SyncMemory
)

// Durability is a log's fsync policy. The zero value is SyncAlways.
type Durability struct {
	Mode     SyncMode
	Interval time.Duration // for SyncInterval
}

// Durability policies by name.
var (
	DurabilityAlways     = Durability{Mode: SyncAlways}
	DurabilityUnsafeNone = Durability{Mode: SyncUnsafeNone}
)

// DurabilityInterval returns the SyncInterval policy for d.
func DurabilityInterval(d time.Duration) Durability {
	return Durability{Mode: SyncInterval, Interval: d}
}

// ParseDurability parses "always", "interval=DURATION" (for example
// "interval=5ms"), "unsafe-none" (also "none") and "memory".
func ParseDurability(s string) (Durability, error) {
	switch s {
	case "always":
		return DurabilityAlways, nil
	case "none", "unsafe-none":
		return DurabilityUnsafeNone, nil
	case "memory":
		return Durability{Mode: SyncMemory}, nil
	}
	if v, ok := strings.CutPrefix(s, "interval="); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			return Durability{}, fmt.Errorf("durability %q: bad interval: %v", s, err)
		}
		if d <= 0 {
			return Durability{}, fmt.Errorf("durability %q: interval must be positive", s)
		}
		return DurabilityInterval(d), nil
	}
	return Durability{}, fmt.Errorf("durability %q: want always, interval=DURATION, unsafe-none or memory", s)
}

func (d Durability) String() string {
	switch d.Mode {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval=" + d.Interval.String()
	case SyncUnsafeNone:
		return "unsafe-none"
	case SyncMemory:
		return "memory"
	}
	return fmt.Sprintf("durability(%d)", d.Mode)
}

// Cleanup is a log's cleanup policy, as Kafka's cleanup.policy.
type Cleanup uint8

const (
	// CleanupDelete removes whole old segments by RetentionAge and RetentionBytes.
	CleanupDelete Cleanup = 1 << iota
	// CleanupCompact keeps the newest record of every key.
	CleanupCompact
)

// Defaults.
const (
	DefaultSegmentBytes       = 1 << 30
	DefaultMaxBatchBytes      = 1 << 20
	DefaultIndexIntervalBytes = 16 << 10
	DefaultDeleteRetention    = 24 * time.Hour
	DefaultSegmentAge         = 7 * 24 * time.Hour
	minSegmentBytes           = 4 << 10
	// MaxBatchBytesLimit is the largest MaxBatchBytes a log accepts; it also
	// bounds what recovery believes a length field.
	MaxBatchBytesLimit = 64 << 20
)

// Options configure one Log. The zero value is valid: durability always,
// 1 GiB segments, 1 MiB batches, delete policy with unlimited retention.
type Options struct {
	Durability Durability

	// SegmentBytes rolls the active segment before it would exceed this size.
	SegmentBytes int64
	// SegmentAge rolls a non-empty active segment whose first append is older
	// than this. Zero means DefaultSegmentAge; negative means never.
	SegmentAge time.Duration
	// MaxBatchBytes refuses larger batches.
	MaxBatchBytes int
	// IndexIntervalBytes is the spacing of sparse offset index entries; the
	// time index is four times sparser. It bounds the bytes scanned per
	// lookup and the index memory (8 bytes per entry).
	IndexIntervalBytes int

	// Cleanup is the cleanup policy; zero means CleanupDelete.
	Cleanup Cleanup
	// RetentionAge removes segments whose newest record is older. Zero keeps
	// data forever.
	RetentionAge time.Duration
	// RetentionBytes removes the oldest segments while the log is larger.
	// Zero means unlimited.
	RetentionBytes int64
	// DeleteRetention is how long compaction keeps tombstones (records with
	// a null value), counted from the tombstone's timestamp.
	DeleteRetention time.Duration

	// Preallocate keeps this many bytes of zero-filled space written ahead
	// of the active segment's end. An append then overwrites blocks the
	// file already has, so its fdatasync writes data only; without it,
	// every fdatasync also commits the file's new size (on ext4 a journal
	// commit: 0.21 ms against 0.15 ms per fsync on the machine
	// docs/benchmarks.md describes). The cost is writing every byte twice
	// and up to this much disk per log, so it suits a log with a single
	// writer that waits for each fsync (the event store), not thousands
	// of partitions. Zero means none; at most MaxPreallocate. The zeros
	// are cut off when the segment is sealed; recovery reads a zero-filled
	// tail as unwritten space, never as lost data.
	Preallocate int64
}

// MaxPreallocate bounds Options.Preallocate.
const MaxPreallocate = 64 << 20

func (o *Options) setDefaults() {
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.SegmentAge == 0 {
		o.SegmentAge = DefaultSegmentAge
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = int(min(DefaultMaxBatchBytes, o.SegmentBytes-segHeaderSize))
	}
	if o.IndexIntervalBytes == 0 {
		o.IndexIntervalBytes = DefaultIndexIntervalBytes
	}
	if o.Cleanup == 0 {
		o.Cleanup = CleanupDelete
	}
	if o.DeleteRetention == 0 {
		o.DeleteRetention = DefaultDeleteRetention
	}
}

// Validate reports every invalid field at once.
func (o *Options) Validate() error {
	var errs []error
	if o.SegmentBytes < minSegmentBytes || o.SegmentBytes > 1<<32-1 {
		errs = append(errs, fmt.Errorf("segment bytes %d outside [%d, %d]", o.SegmentBytes, minSegmentBytes, int64(1<<32-1)))
	}
	if hi := min(int64(MaxBatchBytesLimit), o.SegmentBytes-segHeaderSize); o.MaxBatchBytes < 64 || int64(o.MaxBatchBytes) > hi {
		errs = append(errs, fmt.Errorf("max batch bytes %d outside [64, %d]", o.MaxBatchBytes, hi))
	}
	if o.IndexIntervalBytes < 64 {
		errs = append(errs, fmt.Errorf("index interval bytes %d below 64", o.IndexIntervalBytes))
	}
	if o.Durability.Mode == SyncInterval && o.Durability.Interval <= 0 {
		errs = append(errs, fmt.Errorf("durability interval %v must be positive", o.Durability.Interval))
	}
	if o.Durability.Mode > SyncUnsafeNone {
		errs = append(errs, fmt.Errorf("durability %v cannot back a log on disk", o.Durability))
	}
	if o.Preallocate < 0 || o.Preallocate > MaxPreallocate {
		errs = append(errs, fmt.Errorf("preallocate %d bytes outside [0, %d]", o.Preallocate, MaxPreallocate))
	}
	if o.RetentionAge < 0 || o.RetentionBytes < 0 || o.DeleteRetention < 0 {
		errs = append(errs, errors.New("retention settings must not be negative"))
	}
	if o.Cleanup&^(CleanupDelete|CleanupCompact) != 0 {
		errs = append(errs, fmt.Errorf("unknown cleanup policy bits %#x", o.Cleanup))
	}
	return errors.Join(errs...)
}
